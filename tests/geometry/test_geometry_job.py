"""The geometry library room: the main job's step calls it directly, plots are drawn once; finding a matching index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

PLOTS = ("similarity_hist.png", "projection.png", "probe_noise.png", "infonce_k.png", "summary.png")


def _count_calls(monkeypatch, module, name: str) -> list:
    calls: list = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _job(data: Path, run_dir: Path, config):
    from jobs.tune import Job, TuneOptions
    from retrieval.sources import resolve

    return Job(TuneOptions(data=str(data), out=run_dir, config=config, geometry=True), resolve(str(data)))


def test_main_job_geometry_step_skips_the_command_line_and_draws_each_plot_once(
        tiny_model_path, beir_dir, tmp_path, monkeypatch, caplog):
    import logging

    import cli
    import retrieval.geometry_plots as plots
    import retrieval.models
    from finetune.config import FinetuneConfig
    from jobs.tune import _geometry

    def no_cli(*args, **kwargs):
        raise AssertionError("the geometry step went through the command-line parser")

    monkeypatch.setattr(cli, "main", no_cli)
    monkeypatch.setattr(cli, "build_parser", no_cli)
    summaries = _count_calls(monkeypatch, plots, "plot_summary")
    projections = _count_calls(monkeypatch, plots, "plot_projection")
    loads = _count_calls(monkeypatch, retrieval.models, "load_model")

    job = _job(beir_dir, tmp_path / "run", FinetuneConfig(base=str(tiny_model_path), test_split="train"))
    run = job.run
    shutil.copytree(tiny_model_path, run.model_dir)  # the "tuned" model: same weights, so it shares the base index
    assert job.base is job.base and job.tuned is job.tuned  # loaded once, then passed along
    caplog.set_level(logging.INFO)
    markdown = _geometry(job)

    assert len(loads) == 2  # the job's two loads; geometry measured the models it was handed
    assert len(summaries) == 1 and len(projections) == 1
    assert list(summaries[0][0]) == [f"base ({tiny_model_path})", "tuned"]  # drawn with the report's labels
    results = json.loads(run.geometry_json.read_text())
    assert list(results) == [str(tiny_model_path), str(run.model_dir)]
    assert results[str(run.model_dir)]["counts"] == {"documents": 24, "pairs": 16, "labelled_documents": 16, "classes": 8}
    for name in PLOTS:
        assert (run.geometry_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(geometry/{name})" in markdown  # links relative to the run folder, where report.md lives
    assert "## Embedding geometry" in markdown and "| tuned |" in markdown
    saved = (run.geometry_dir / "geometry.md").read_text()
    assert saved.startswith("# Geometry report: ") and "(similarity_hist.png)" in saved
    assert "reusing document embeddings" in caplog.text  # the tuned model found the base index


def test_geometry_step_skips_the_section_on_a_user_error(tiny_model_path, beir_dir, tmp_path, caplog):
    from finetune.config import FinetuneConfig
    from jobs.tune import _geometry

    job = _job(beir_dir, tmp_path / "run", FinetuneConfig(base=str(tiny_model_path), test_split="no-such-split"))
    shutil.copytree(tiny_model_path, job.run.model_dir)
    assert _geometry(job) is None
    assert "geometry skipped" in caplog.text and "no-such-split" in caplog.text


def test_loaded_models_are_measured_without_loading_by_name(tiny_model, beir_dir, tmp_path):
    from retrieval.geometry_job import GeometryOptions, run_geometry
    from retrieval.sources import resolve

    def no_loading(name):
        raise AssertionError(f"{name} was loaded again")

    out = tmp_path / "geo"
    output = run_geometry(resolve(str(beir_dir)), {"base": tiny_model}, out, GeometryOptions(split="train"),
                          load=no_loading)
    assert list(output.results) == ["base"] and json.loads((out / "geometry.json").read_text()) == output.results
    assert [p.name for p in output.files] == list(PLOTS) and "(summary.png)" in output.markdown
    assert (out / "indexes" / "base" / "index.faiss").exists()


def test_find_matching_index_returns_the_first_matching_folder(tiny_model, beir_dir, tmp_path):
    from retrieval.retriever import IndexSpec, build_or_load, find_matching_index
    from retrieval.sources import resolve

    corpus = resolve(str(beir_dir)).corpus
    other = dict(list(corpus.items())[:-1])  # another corpus: a mismatch, skipped
    build_or_load(tiny_model, "m", other, tmp_path / "a", progress=False)
    build_or_load(tiny_model, "m", corpus, tmp_path / "b", progress=False)
    build_or_load(tiny_model, "m", corpus, tmp_path / "c", progress=False)
    folders = [tmp_path / "missing", tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    found = find_matching_index(tiny_model, corpus, IndexSpec(), folders)
    assert found is not None and found.path == tmp_path / "b" and found.vectors().shape == (len(corpus), 32)
    assert find_matching_index(tiny_model, corpus, IndexSpec(factory="HNSW32"), folders) is None
    assert find_matching_index(tiny_model, corpus, None, []) is None


@pytest.mark.parametrize("prompt", [None, "passage: "])
def test_tau_sweep_doc_vectors_come_from_a_matching_index_only(tiny_model, beir_dir, tmp_path, prompt):
    from finetune.tau_sweep import _doc_vectors
    from retrieval.retriever import IndexSpec, build_or_load
    from retrieval.sources import resolve

    dataset = resolve(str(beir_dir))
    build_or_load(tiny_model, "m", dataset.corpus, tmp_path / "idx", IndexSpec(document_prompt=prompt), progress=False)
    vectors = _doc_vectors(tiny_model, dataset, [tmp_path / "none", tmp_path / "idx"])
    assert (vectors is None) == (prompt is not None)  # the sweep's indexes have no prompt
    if vectors is not None:
        assert vectors.shape == (len(dataset.corpus), 32)
