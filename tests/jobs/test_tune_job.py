"""The main job end to end on a small user-format dataset: report, stage skipping, crash and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TOPICS

TUNE_FLAGS = ["--epochs", "2", "--batch-size", "4", "--learning-rate", "1e-3", "--precision", "fp32",
              "--batch-size-encode", "16"]


def make_user_folder(folder: Path, per_topic: int = 5) -> Path:
    """corpus.jsonl + pairs.jsonl with no split column: the loader must split by query."""
    folder.mkdir(parents=True)
    words = {t: s.split() for t, s in TOPICS.items()}
    with open(folder / "corpus.jsonl", "w") as f:
        for topic, sentence in TOPICS.items():
            for i in range(3):
                f.write(json.dumps({"_id": f"{topic}{i}", "title": topic, "text": f"{sentence} number {i}"}) + "\n")
    with open(folder / "pairs.jsonl", "w") as f:
        for topic in TOPICS:
            for i in range(per_topic):
                query = " ".join(words[topic][i % len(words[topic]) :][:3]) + f" {topic} {i}"
                f.write(json.dumps({"query": query, "doc_id": f"{topic}{i % 3}"}) + "\n")
    return folder


def test_user_pairs_are_split_by_query_deterministically(tmp_path):
    from retrieval.sources import resolve

    ds = resolve(str(make_user_folder(tmp_path / "user")))
    assert set(ds.qrels) == {"train", "dev", "test"}
    seen = [q for split in ds.qrels.values() for q in split]
    assert len(seen) == len(set(seen)) == 40  # every query in exactly one split
    assert resolve(str(tmp_path / "user")).qrels == ds.qrels


def test_tune_writes_every_artefact_and_a_self_contained_report(tiny_model_path, tmp_path, capsys):
    from cli import main

    data, out = make_user_folder(tmp_path / "user"), tmp_path / "run"
    assert main(["tune", "--data", str(data), "--base", str(tiny_model_path), "--out", str(out), *TUNE_FLAGS,
                 "--matryoshka-dims", "32,16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"base", "tuned", "bm25", "hybrid"}
    widths = json.loads((out / "stages" / "widths.json").read_text())["value"]
    assert [w["dim"] for w in widths] == [32, 16]
    assert widths[0]["ndcg@10"] == pytest.approx(metrics["tuned"]["ndcg@10"], abs=1e-6)  # full width = the tuned run
    assert json.loads((out / "model" / "matryoshka.json").read_text())
    assert {"ndcg@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@100", "mrr@10"} <= set(metrics["tuned"])
    for name in ("run.json", "comparison.json", "per_query.json", "curves.json", "runs/hybrid.trec", "model/modules.json"):
        assert (out / name).exists(), name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and 'src="report_files/' not in html and 'src="geometry/' not in html
    assert html.count("<figure><img") == html.count("<img") and "<figcaption>" in html  # captions under the figures
    report = (out / "report.md").read_text()
    assert "## Significance" in report and "## Embedding geometry" in report and "unseen documents" in report
    assert "## Matryoshka widths" in report and "| 16 |" in report
    assert not (out / "checkpoints").exists()  # deleted once the model was exported
    info = json.loads((out / "run.json").read_text())
    assert Path(info["data_path"]).is_absolute() and Path(info["data_path"]) == data.resolve()
    rec = info["recommendation"]
    assert rec["system"] in ("base", "tuned", "base+bm25", "tuned+bm25") and rec["evidence"]
    assert set(rec["evidence"]) <= {"unseen", "seen"} and all(e["n"] > 0 for e in rec["evidence"].values())
    first = report.split("## ")[0]  # the lines above the first section
    assert f"**Deploy: {rec['deploy']}** (`{rec['system']}`)" in first and "unseen documents (" in first
    if rec["system"] in ("tuned", "tuned+bm25"):  # never recommended while worse than base on dev-unseen
        unseen = rec["evidence"].get("unseen")
        assert unseen is None or unseen["mean"]["tuned"] >= unseen["mean"]["base"]
    assert ("> **Warning.**" in first) == bool(rec["warnings"] or any(
        r["delta"] < 0 for r in info["settings"]["seen_unseen"] if r["group"].startswith("no ")))
    assert len(json.loads((out / "geometry" / "geometry.json").read_text())) == 2  # base and tuned
    info = json.loads((out / "run.json").read_text())
    assert info["tuned_model"] == "model" and info["settings"]["fingerprints"]["corpus"]
    assert "report.html" in capsys.readouterr().out
    assert_trec_eval_agrees(out, data)
    assert_plain_encode_reproduces_the_reported_ndcg(out, data)
    assert_report_prints_the_measured_numbers(out, data)


def assert_report_prints_the_measured_numbers(out: Path, data: Path) -> None:
    """report.md's metrics table is metrics.json, and its headline is metrics.json's and per_query.json's numbers."""
    metrics = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    table = report.split("## Metrics\n\n")[1].split("\n\n")[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")][1:]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[2:])}
    assert set(rows) == set(metrics)
    for system, cells in rows.items():
        assert {m: float(v) for m, v in zip(header, cells)} == pytest.approx(
            {m: metrics[system][m] for m in header}, abs=5e-5), system
    per_query = json.loads((out / "per_query.json").read_text())
    info = json.loads((out / "run.json").read_text())
    from finetune.dev_split import label_seen
    from retrieval.sources import resolve

    ds = resolve(str(data))
    seen, unseen = label_seen(ds.split("test"), ds.split("train"))  # grouped here by other code than the report's
    rows = {r["group"].startswith("no "): r for r in info["settings"]["seen_unseen"]}
    for is_unseen, qids in ((False, seen), (True, unseen)):
        if not qids:
            continue
        row = rows[is_unseen]
        assert row["queries"] == len(qids)
        for system in ("base", "tuned"):
            assert row[system] == pytest.approx(sum(per_query["systems"][system][q] for q in qids) / len(qids), abs=1e-9)
        assert f"({row['queries']}) {row['base']:.4f} -> {row['tuned']:.4f}" in report.split("## ")[0]
    tuned = per_query["systems"]["tuned"]
    assert sum(tuned.values()) / len(tuned) == pytest.approx(metrics["tuned"]["ndcg@10"], abs=1e-9)
    n = len(tuned)
    assert f"all {n} test queries {metrics['base']['ndcg@10']:.4f} -> {metrics['tuned']['ndcg@10']:.4f}" in report


def assert_plain_encode_reproduces_the_reported_ndcg(out: Path, data: Path) -> None:
    """Plain ``SentenceTransformer(path).encode`` + the run's own FAISS index give metrics.json's tuned nDCG@10."""
    import faiss
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate
    from sentence_transformers import SentenceTransformer

    from retrieval.sources import resolve
    from tests.finetune.test_train import card_example

    ds = resolve(str(data))
    qrels = ds.split("test")
    info = json.loads((out / "run.json").read_text())
    assert info["settings"]["finetune"]["mode"] == "full"
    index_dir = out / "indexes" / "tuned"
    index = faiss.read_index(str(index_dir / "index.faiss"))
    doc_ids = json.loads((index_dir / "meta.json").read_text())["doc_ids"]
    model = SentenceTransformer(str(out / "model"))
    qids = list(qrels)
    scores, ids = index.search(model.encode([ds.queries[q] for q in qids], normalize_embeddings=True), 100)
    run = {q: {doc_ids[i]: float(s) for s, i in zip(row_s, row_i) if i >= 0} for q, row_s, row_i in zip(qids, scores, ids)}
    reported = json.loads((out / "metrics.json").read_text())["tuned"]["ndcg@10"]
    assert ranx_evaluate(Qrels(qrels), Run(run), "ndcg@10") == pytest.approx(reported, abs=1e-4)
    assert "model.encode(" in card_example(out / "model")


TREC_MEASURES = {"ndcg@10": ("ndcg_cut_10", None), "recall@1": ("recall_1", None), "recall@5": ("recall_5", None),
                 "recall@10": ("recall_10", None), "recall@20": ("recall_20", None), "recall@100": ("recall_100", None),
                 "map@100": ("map_cut_100", None), "mrr@10": ("recip_rank", 10)}


def assert_trec_eval_agrees(out: Path, data: Path) -> None:
    """Every system's written run file, scored by pytrec_eval (trec_eval's own C code), gives metrics.json's numbers."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from retrieval.sources import resolve

    qrels = resolve(str(data)).split("test")
    metrics = json.loads((out / "metrics.json").read_text())
    for system, reported in metrics.items():
        run: dict[str, dict[str, float]] = {}
        for line in (out / "runs" / f"{system}.trec").read_text().splitlines():
            qid, _, doc, rank, score, _ = line.split()
            run.setdefault(qid, {})[doc] = float(score)
        for name, (measure, cut) in TREC_MEASURES.items():
            if name not in reported:
                continue
            ranked = run if cut is None else {q: dict(sorted(d.items(), key=lambda x: -x[1])[:cut]) for q, d in run.items()}
            per_query = pytrec_eval.RelevanceEvaluator(qrels, {measure}).evaluate(ranked)
            ours = sum(per_query[q][measure] for q in qrels if q in per_query) / len(qrels)  # ranx: unretrieved query = 0
            assert ours == pytest.approx(reported[name], abs=1e-6), (system, name)


def test_rerun_skips_the_finished_fine_tuning(tiny_model_path, tmp_path, monkeypatch):
    import finetune.train
    import retrieval.models
    from finetune.config import FinetuneConfig
    from jobs.tune import TuneOptions, tune

    data = make_user_folder(tmp_path / "user")
    config = FinetuneConfig(base=str(tiny_model_path), epochs=1, batch_size=4, precision="fp32")
    loads, load = [], retrieval.models.load_model
    monkeypatch.setattr(retrieval.models, "load_model", lambda name, *a, **k: loads.append(name) or load(name, *a, **k))
    first = tune(TuneOptions(data=str(data), out=tmp_path / "run", config=config, geometry=True, general=str(data)))
    # every stage (fine-tuning, evaluation, forgetting guard, geometry) used the job's two models
    assert sorted(loads) == sorted([str(tiny_model_path), str(tmp_path / "run" / "model")]), loads
    # the test split is scored once, by the evaluate stage (with BM25 and the hybrids), not also inside fine-tuning
    assert json.loads((tmp_path / "run" / "finetune.json").read_text())["test"] is None
    monkeypatch.setattr(finetune.train, "finetune", lambda *a, **k: pytest.fail("fine-tuned again"))
    again = tune(TuneOptions(data=str(data), out=tmp_path / "run", config=config))
    assert again["metrics"] == first["metrics"]


def test_a_rerun_with_nothing_changed_skips_every_stage_and_a_changed_flag_reruns_what_depends_on_it(
        tiny_model_path, tmp_path, monkeypatch):
    import jobs.tune as pipeline
    from finetune.config import FinetuneConfig
    from jobs.tune import TuneOptions, tune

    data = make_user_folder(tmp_path / "user")
    config = FinetuneConfig(base=str(tiny_model_path), epochs=1, batch_size=4, precision="fp32")
    calls = []

    def geometry(job):
        calls.append("geometry")
        job.run.geometry_dir.mkdir(parents=True, exist_ok=True)
        job.run.geometry_json.write_text("{}")
        return "## Embedding geometry\n"

    monkeypatch.setattr(pipeline, "_geometry", geometry)
    first = tune(TuneOptions(data=str(data), out=tmp_path / "run", config=config, geometry=True))
    report = (tmp_path / "run" / "report.md").read_text()
    real_evaluate = pipeline._evaluate
    monkeypatch.setattr(pipeline, "_evaluate", lambda *a: calls.append("evaluate") or real_evaluate(*a))
    again = tune(TuneOptions(data=str(data), out=tmp_path / "run", config=config, geometry=True))
    assert calls == ["geometry"]  # only the first run's geometry: nothing ran again
    assert again["metrics"] == first["metrics"] and again["recommendation"] == first["recommendation"]
    assert (tmp_path / "run" / "report.md").read_text().split("## Settings")[0] == report.split("## Settings")[0]
    tune(TuneOptions(data=str(data), out=tmp_path / "run", config=config, geometry=True, k=50))
    assert calls == ["geometry", "evaluate"]  # --k changes the evaluation, not the geometry


def test_killed_during_training_the_rerun_resumes_from_the_checkpoint(tiny_model_path, tmp_path):
    data, out = make_user_folder(tmp_path / "user"), tmp_path / "run"
    cmd = [sys.executable, "-m", "cli", "tune", "--data", str(data), "--base", str(tiny_model_path),
           "--out", str(out), "--epochs", "40", "--batch-size", "4", "--precision", "fp32", "--evals-per-epoch", "1",
           "--keep-checkpoints"]  # read below; without the flag they go once the model is exported
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "tune finished or failed before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists() and not (out / "metrics.json").exists()
    first = min(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stderr and "checkpoint-" in result.stderr
    state = json.loads(max((out / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                           key=lambda p: int(p.parent.name.split("-")[1])).read_text())
    logged_steps = [row["step"] for row in state["log_history"] if "loss" in row]
    assert logged_steps == sorted(set(logged_steps)) and min(logged_steps) <= first  # one history, no restart from 0
    assert (out / "metrics.json").exists()
