"""``retrieval geometry`` end to end on the toy dataset with the tiny model and a perturbed copy of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main

PLOTS = ("similarity_hist.png", "projection.png", "probe_noise.png", "infonce_k.png", "summary.png")


@pytest.fixture
def perturbed_model_path(tiny_model_path: Path, tmp_path: Path) -> Path:
    """The tiny model with Gaussian noise added to every weight: a second, different model."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    path = tmp_path / "perturbed"
    model.save(str(path))
    return path


def test_two_models_get_every_measure_and_non_empty_plots(tiny_model_path, perturbed_model_path, beir_dir, tmp_path, capsys):
    out = tmp_path / "geo"
    args = ["geometry", "--data", str(beir_dir), "--split", "train", "--model", str(tiny_model_path),
            "--model", str(perturbed_model_path), "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "geometry.json").read_text())
    assert set(results) == {str(tiny_model_path), str(perturbed_model_path)}
    for r in results.values():
        assert -1.0 <= r["anisotropy"] <= 1.0 and 0.0 <= r["alignment"] <= 4.0 and r["uniformity"] <= 0.0
        assert r["counts"] == {"documents": 24, "pairs": 16, "labelled_documents": 16, "classes": 8}
        assert r["class_similarity"]["n_intra"] == 8 and len(r["linear_probe"]["accuracy"]) == 5
        assert r["infonce"]["k"] == [1, 2, 4, 8, 16]  # 24 documents, 2 relevant ones excluded per query
    assert results[str(tiny_model_path)]["anisotropy"] != results[str(perturbed_model_path)]["anisotropy"]
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "geometry.md").read_text()
    assert "## Embedding geometry" in report and "(similarity_hist.png)" in report
    printed = capsys.readouterr().out
    assert "anisotropy" in printed and "tiny-model" in printed and "perturbed" in printed


def test_second_run_reuses_the_saved_index_instead_of_encoding(tiny_model_path, beir_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "geo"
    args = ["geometry", "--data", str(beir_dir), "--split", "train", "--model", str(tiny_model_path), "--out", str(out)]
    assert main(args) == 0
    assert (out / "indexes" / "tiny-model" / "index.faiss").exists()
    assert not (out / "indexes" / "tiny-model" / "embeddings.npy").exists()  # a Flat index holds the vectors itself
    first = json.loads((out / "geometry.json").read_text())
    import retrieval.retriever

    def no_encoding(*a, **k):
        raise AssertionError("the corpus was encoded again")

    monkeypatch.setattr(retrieval.retriever, "encode", no_encoding)
    capsys.readouterr()
    assert main(args) == 0
    assert "reusing document embeddings" in capsys.readouterr().out
    assert json.loads((out / "geometry.json").read_text()) == first


def test_max_docs_measures_a_sample_with_the_judged_documents_and_writes_no_index(tiny_model_path, beir_dir, tmp_path):
    out = tmp_path / "geo"
    assert main(["geometry", "--data", str(beir_dir), "--split", "train", "--model", str(tiny_model_path),
                 "--out", str(out), "--max-docs", "20"]) == 0
    r = json.loads((out / "geometry.json").read_text())[str(tiny_model_path)]
    assert r["counts"]["documents"] == 20 and r["counts"]["labelled_documents"] == 16
    assert not (out / "indexes").exists()


def test_classes_can_come_from_a_label_column(tiny_model_path, beir_dir, tmp_path):
    labels = tmp_path / "labels.jsonl"
    with open(beir_dir / "corpus.jsonl") as src, open(labels, "w") as dst:
        for line in src:
            doc = json.loads(line)
            dst.write(json.dumps({"_id": doc["_id"], "metadata": {"topic": doc["title"].split()[0]}}) + "\n")
    out = tmp_path / "geo"
    assert main(["geometry", "--data", str(beir_dir), "--model", str(tiny_model_path), "--out", str(out),
                 "--labels", str(labels), "--label-field", "metadata.topic"]) == 0
    r = json.loads((out / "geometry.json").read_text())[str(tiny_model_path)]
    assert r["counts"]["classes"] == 8 and r["class_similarity"]["n_intra"] == 8 * 3
    assert r["source"]["classes_from"].startswith("labels:")


@pytest.mark.slow
def test_tau_sweep_fine_tunes_once_per_temperature_and_plots_the_result(tiny_model_path, beir_dir, tmp_path, capsys):
    settings = tmp_path / "ft.json"
    settings.write_text(json.dumps({"batch_size": 4, "dev_fraction": 0.25, "learning_rate": 1e-3, "precision": "fp32"}))
    out = tmp_path / "geo"
    assert main(["geometry", "--data", str(beir_dir), "--model", str(tiny_model_path), "--out", str(out), "--tau-sweep",
                 "--taus", "0.05", "0.5", "--tau-epochs", "1", "--tau-settings", str(settings)]) == 0
    sweep = json.loads((out / "tau_sweep.json").read_text())
    assert sweep["tau"] == [0.05, 0.5] and sweep["mode"] == "query"
    assert all(0.0 <= n <= 1.0 for n in sweep["ndcg@10"]) and all(u < 0 for u in sweep["query_uniformity"])
    assert sweep["uniformity"][0] == sweep["uniformity"][1]  # query mode keeps the base document side
    assert (out / "tau_sweep" / "tau-0.05" / "model").is_dir()
    # the toy test queries ask about doc0 of each topic; training positives are doc1/doc2: all 8 unseen
    assert sweep["unseen_queries"] == 8
    for i, tau in enumerate(sweep["tau"]):
        per_query = json.loads((out / "tau_sweep" / f"tau-{tau:g}" / "per_query.json").read_text())
        assert per_query["metric"] == "ndcg@10"
        for system, key in (("tuned", "unseen_ndcg@10"), ("base", "base_unseen_ndcg@10")):
            scores = per_query["systems"][system]
            assert len(scores) == 8 and sweep[key][i] == pytest.approx(sum(scores.values()) / 8)
        assert sweep["unseen_ndcg@10"][i] == pytest.approx(sweep["ndcg@10"][i])
    assert (out / "tau_sweep.png").stat().st_size > 0 and "tau_sweep.png" in (out / "geometry.md").read_text()
    assert "tau=0.5" in capsys.readouterr().out


def test_unknown_tau_setting_is_refused(tiny_model_path, beir_dir, tmp_path, capsys):
    settings = tmp_path / "ft.json"
    settings.write_text(json.dumps({"no_such_setting": 1}))
    assert main(["geometry", "--data", str(beir_dir), "--model", str(tiny_model_path), "--out", str(tmp_path / "g"),
                 "--tau-sweep", "--tau-settings", str(settings)]) == 2
    assert "no_such_setting" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()  # refused before any work


def test_geometry_report_links_the_plots_relative_to_the_report_folder(tmp_path):
    import numpy as np

    from retrieval import geometry as g
    from retrieval import geometry_measure as m
    from retrieval.geometry_plots import geometry_report

    rng = np.random.default_rng(0)
    vecs, labels = g.unit(rng.normal(size=(40, 8))), np.arange(40) % 4
    results = {name: m.measure_all(vecs + shift, vecs[:10], vecs[10:20], vecs, labels, config=m.GeometryConfig(ks=(1, 4)))
               for name, shift in (("base", 0.0), ("tuned", 0.3))}
    markdown = geometry_report(results, tmp_path / "run" / "geometry", relative_to=tmp_path / "run")
    assert "| base |" in markdown and "| tuned |" in markdown
    for name in PLOTS:
        assert f"(geometry/{name})" in markdown and (tmp_path / "run" / "geometry" / name).stat().st_size > 0


def test_projection_uses_umap_when_it_is_installed():
    pytest.importorskip("umap")
    import numpy as np

    from retrieval import geometry as g
    from retrieval import geometry_measure as m

    vecs = g.unit(np.random.default_rng(0).normal(size=(60, 8)))
    proj = m.measure_all(vecs, vecs[:5], vecs[5:10], vecs, np.arange(60) % 3, config=m.GeometryConfig(ks=(1,)))["projection"]
    assert len(proj["umap_points"]) == 60 and len(proj["umap_background"]) == 60


def test_query_side_tuned_model_reuses_the_base_index_and_changes_only_query_measures(
        tiny_model_path, perturbed_model_path, beir_dir, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    base, tuned_queries = (SentenceTransformer(str(p), device="cpu") for p in (tiny_model_path, perturbed_model_path))
    router = Router.for_query_document(query_modules=list(tuned_queries), document_modules=list(base))
    asymmetric = SentenceTransformer(modules=[router], device="cpu")
    asymmetric.max_seq_length = base.max_seq_length
    asymmetric.save(str(tmp_path / "query-tuned"))
    out = tmp_path / "geo"
    assert main(["geometry", "--data", str(beir_dir), "--split", "train", "--model", str(tiny_model_path),
                 "--model", str(tmp_path / "query-tuned"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"reusing document embeddings of the index at {out / 'indexes' / 'tiny-model'}") == 1
    assert not (out / "indexes" / "query-tuned").exists()
    before, after = json.loads((out / "geometry.json").read_text()).values()
    assert after["anisotropy"] == before["anisotropy"] and after["class_similarity"] == before["class_similarity"]
    assert after["alignment"] != before["alignment"] and after["query_anisotropy"] != before["query_anisotropy"]
