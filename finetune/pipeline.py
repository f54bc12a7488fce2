"""The main job: from a domain dataset to a tuned model, its index and a before/after report.

Stages (each skipped when its output exists and matches its inputs):

1. fine-tune (:func:`finetune.train.finetune`): base index (reused when it matches),
   mining, training (resumes from its last checkpoint), export of ``RUN/model``;
   skipped whole when ``stages.json`` records the same settings and data fingerprints;
2. evaluate base, tuned, BM25 and hybrid (RRF of BM25 and tuned) on the test split;
3. optionally the forgetting guard on a second dataset (``--general``);
4. report: ``metrics.json``, ``comparison.json``, ``per_query.json``, ``curves.json``,
   ``runs/``, ``report.md`` and a self-contained ``report.html``.

The layout is :mod:`retrieval.rundir`'s, which the app reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from finetune.config import FinetuneConfig
from index.atomic import atomic_path
from retrieval import rundir
from retrieval.data import Dataset
from retrieval.encode import corpus_fingerprint

logger = logging.getLogger(__name__)


@dataclass
class TuneOptions:
    data: str
    out: Path
    config: FinetuneConfig
    general: str | None = None
    fusion: str = "rrf"
    k: int = 100
    strict: bool = False
    keep_checkpoints: bool = False  # trainer checkpoints are deleted once the model is exported
    # Geometry diagnostics of base vs tuned: a callable the caller injects (the CLI does), which
    # writes RUN/geometry/ and returns the report's markdown section; None skips the stage.
    geometry: Callable[[rundir.RunDir], str | None] | None = None


def _qrels_fingerprint(qrels: dict) -> str:
    return hashlib.sha256(json.dumps(qrels, sort_keys=True).encode()).hexdigest()[:16]


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.seconds = total, 0, {}

    def stage(self, name: str, fn, *args, **kwargs):
        self.done += 1
        logger.info("[%d/%d] %s", self.done, self.total, name)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        logger.info("[%d/%d] %s done in %.1fs", self.done, self.total, name, self.seconds[name])
        return result


def tune(opts: TuneOptions) -> dict[str, Any]:
    """Run the main job; return ``{"metrics": ..., "seconds": ..., "run_dir": ...}``."""
    from retrieval.sources import resolve

    run = rundir.RunDir(Path(opts.out))
    progress = _Progress(4 + bool(opts.general) + bool(opts.geometry) + bool(opts.config.parsed_matryoshka_dims()))
    dataset = progress.stage("load data", resolve, opts.data, strict=opts.strict)
    fingerprints = {"corpus": corpus_fingerprint(dataset.corpus),
                    "qrels": {s: _qrels_fingerprint(q) for s, q in sorted(dataset.qrels.items())},
                    "settings": opts.config.fingerprint()}
    progress.stage("fine-tune", _finetune_stage, dataset, opts.config, run, fingerprints, opts.keep_checkpoints)
    inputs = {**{k: fingerprints[k] for k in ("corpus", "qrels", "settings")}, "k": opts.k, "fusion": opts.fusion,
              "test_split": opts.config.test_split, "model": _model_stamp(run.model_dir)}
    evaluation = progress.stage("evaluate base, tuned, BM25, hybrid", _cached, run, "evaluate", inputs,
                                _evaluate, dataset, opts, run,
                                outputs=(run.metrics_json, run.comparison_json, run.per_query_json, run.curves_json))
    evaluation["queries"] = dataset.split_queries(evaluation["split"])
    general = (progress.stage("forgetting guard", _cached, run, "general", {**inputs, "general": opts.general},
                              _general, opts, run) if opts.general else None)
    evaluation["recommendation"] = _recommend(evaluation, general)
    widths = (progress.stage("matryoshka widths", _cached, run, "widths", inputs, _widths, dataset, opts, run)
              if opts.config.parsed_matryoshka_dims() else None)
    geometry_inputs = {k: v for k, v in inputs.items() if k not in ("k", "fusion")}  # geometry reads no run
    geometry_md = (progress.stage("geometry", _cached, run, "geometry", geometry_inputs, opts.geometry, run,
                                  outputs=(run.geometry_json,)) if opts.geometry else None)
    progress.stage("report", _report, dataset, opts, run, evaluation, general, geometry_md, fingerprints, progress.seconds,
                   widths)
    return {"metrics": evaluation["metrics"], "seconds": progress.seconds, "run_dir": run.path,
            "general": {k: v for k, v in general.items() if k != "per_query"} if general else None,
            "recommendation": evaluation.get("recommendation"), "seen_unseen": evaluation.get("seen_unseen")}


def _model_stamp(folder: Path) -> str:
    """Names, sizes and times of the model's files: changes whenever the model is written again."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    stamp = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]


def _cached(run: rundir.RunDir, name: str, inputs: dict[str, Any], fn: Callable[..., Any], *args: Any,
            outputs: tuple[Path, ...] = ()) -> Any:
    """``fn(*args)``, or its stored result when ``RUN/stages.json`` records the same ``inputs`` for ``name``.

    Results are kept as JSON under ``RUN/stages/``, so a rerun with nothing changed skips the stage;
    changing an input reruns it (and only the stages that depend on that input).
    """
    stages_file, value_file = run.path / "stages.json", run.path / "stages" / f"{name}.json"
    done = json.loads(stages_file.read_text()) if stages_file.exists() else {}
    if done.get(name) == inputs and value_file.exists() and all(p.exists() for p in outputs):
        logger.info("%s: inputs unchanged, reusing %s", name, value_file)
        return json.loads(value_file.read_text())["value"]
    value = fn(*args)
    rundir.write_json(value_file, {"value": json.loads(json.dumps(value, default=float))})
    done = json.loads(stages_file.read_text()) if stages_file.exists() else {}
    rundir.write_json(stages_file, {**done, name: inputs})
    return json.loads(value_file.read_text())["value"]  # as a rerun will see it (NaN as null)


def _recommend(evaluation: dict[str, Any], general: dict[str, Any] | None) -> dict[str, Any] | None:
    """Which system to deploy, from the dev evidence (and the forgetting guard); None without dev queries."""
    from retrieval.recommend import recommend

    if not evaluation["dev"]:
        logger.warning("no dev queries to decide which system to deploy on; no recommendation")
        return None
    rec = recommend(evaluation["dev"], general["per_query"] if general else None).to_dict()
    test = {"tuned+bm25": "hybrid"}.get(rec["system"], rec["system"])
    rec["test"] = evaluation["metrics"].get(test) or evaluation["extra_metrics"].get(test)
    rec["dev_split"] = evaluation["dev_how"]
    logger.info("recommendation: deploy %s (%s)", rec["deploy"], rec["reason"])
    for warning in rec["warnings"]:
        logger.warning("%s", warning)
    return rec


def _finetune_stage(dataset: Dataset, config: FinetuneConfig, run: rundir.RunDir, fingerprints: dict,
                    keep_checkpoints: bool = False) -> None:
    from finetune.train import finetune

    stages_file = run.path / "stages.json"
    done = json.loads(stages_file.read_text()) if stages_file.exists() else {}
    wanted = {"corpus": fingerprints["corpus"], "qrels": fingerprints["qrels"], "settings": fingerprints["settings"]}
    if done.get("finetune") == wanted and (run.model_dir / "modules.json").exists():
        logger.info("fine-tuned model in %s matches settings and data: skipped", run.model_dir)
        return
    # the job's evaluate stage scores the test split (with BM25 and the hybrids): not twice
    finetune(dataset, dataclasses.replace(config, test_split=""), run.path, base_index=run.base_index)
    rundir.write_json(stages_file, {**done, "finetune": wanted})
    if not keep_checkpoints and (run.path / "checkpoints").exists():  # the exported model is what the run keeps
        import shutil

        shutil.rmtree(run.path / "checkpoints")


def _evaluate(dataset: Dataset, opts: TuneOptions, run: rundir.RunDir) -> dict[str, Any]:
    """Test split: metrics, significance, per-query scores, curves and run files; dev split: per-query evidence."""
    from finetune.dev_split import dev_split
    from retrieval.evaluate import compare, evaluate, per_query

    split = opts.config.test_split or "test"
    queries, qrels = dataset.split_queries(split), dataset.split(split)
    c = opts.config
    dev = dev_split(dataset, c.train_split, c.dev_split, c.dev_fraction, c.seed)
    dev_queries = {q: dataset.queries[q] for q in dev.dev if q in dataset.queries and q not in queries}
    every = _search_systems(dataset, {**queries, **dev_queries}, opts, run)
    runs = {name: _restrict(r, queries, name) for name, r in every.items()}
    test_runs = {name: runs[name] for name in ("base", "tuned", "bm25", "hybrid")}
    metrics = evaluate(qrels, test_runs)
    comparison = compare(qrels, test_runs).to_dict()
    rundir.write_json(run.metrics_json, metrics)
    rundir.write_json(run.comparison_json, json.loads(json.dumps(comparison, default=float)))
    rundir.write_json(run.per_query_json, rundir.per_query_payload(qrels, test_runs))
    rundir.write_json(run.curves_json, rundir.curves(qrels, test_runs))
    for name, r in test_runs.items():
        with atomic_path(run.runs_dir / f"{name}.trec") as tmp:
            r.save(str(tmp), kind="trec")
    names = {"base": "base", "tuned": "tuned", "base+bm25": "base+bm25", "hybrid": "tuned+bm25"}
    evidence = {}
    for group, qids in dev.groups().items():
        group_qrels = {q: dev.dev[q] for q in qids if q in dev_queries}
        if group_qrels:
            evidence[group] = {label: per_query(group_qrels, every[name]) for name, label in names.items()}
    base_bm25 = evaluate(qrels, {"base+bm25": runs["base+bm25"]})["base+bm25"]
    return {"metrics": metrics, "comparison": comparison, "split": split, "dev": evidence,
            "dev_how": dev.how, "extra_metrics": {"base+bm25": base_bm25}}


def _search_systems(dataset: Dataset, queries: dict[str, str], opts: TuneOptions, run: rundir.RunDir) -> dict[str, Any]:
    """base, tuned, BM25, tuned+BM25 ("hybrid") and base+BM25 runs for ``queries``, each system searched once."""
    from retrieval.bm25 import bm25_run
    from retrieval.fusion import break_ties, hybrid
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load, search

    spec = IndexSpec(batch_size=opts.config.batch_size_encode)
    base = load_model(opts.config.base)
    tuned = load_model(str(run.model_dir))
    base_index = build_or_load(base, opts.config.base, dataset.corpus, run.base_index, spec, source=dataset.source)
    tuned_index = _tuned_index(tuned, dataset, run, spec, base_index)
    runs = {"base": search(base_index, base, queries, opts.k, "base", progress=False),
            "tuned": search(tuned_index, tuned, queries, opts.k, "tuned", progress=False),
            "bm25": bm25_run(dataset.corpus, queries, opts.k, progress=False)}
    runs["hybrid"] = hybrid([runs["bm25"], runs["tuned"]], method=opts.fusion)
    runs["base+bm25"] = hybrid([runs["bm25"], runs["base"]], method=opts.fusion, name="base+bm25")
    # ties broken before anything is scored or written, so ranx, metrics.json and trec_eval agree
    dense = {"hybrid": runs["tuned"], "base+bm25": runs["base"]}
    return {name: break_ties(r, by=dense.get(name)) for name, r in runs.items()}


def _restrict(run, queries: dict[str, str], name: str):
    from ranx import Run

    data = run.to_dict()
    kept = Run.from_dict({q: data[q] for q in queries if q in data})
    kept.name = name
    return kept


def _tuned_index(tuned, dataset: Dataset, run: rundir.RunDir, spec, base_index):
    """The base index when the tuned model's document side is the base model's; else its own (reused if built)."""
    from retrieval.models import model_fingerprint
    from retrieval.retriever import build_or_load

    if model_fingerprint(tuned, "document") == base_index.meta.model_fingerprint:
        return base_index
    return build_or_load(tuned, str(run.model_dir), dataset.corpus, run.tuned_index, spec, source=dataset.source)


def _widths(dataset: Dataset, opts: TuneOptions, run: rundir.RunDir) -> list[dict]:
    """The tuned model at each ``--matryoshka-dims`` width on the test split (:func:`retrieval.widths.width_rows`)."""
    from retrieval.encode import encode
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load
    from retrieval.widths import width_rows

    spec = IndexSpec(batch_size=opts.config.batch_size_encode)
    tuned = load_model(str(run.model_dir))
    base_index = build_or_load(load_model(opts.config.base), opts.config.base, dataset.corpus, run.base_index, spec,
                               source=dataset.source)
    stored = _tuned_index(tuned, dataset, run, spec, base_index)
    split = opts.config.test_split or "test"
    queries = dataset.split_queries(split)
    qids = list(queries)
    vectors = encode(tuned, [queries[q] for q in qids], None, opts.config.batch_size_encode, False, "query")
    return width_rows(np.asarray(stored.vectors()), stored.meta.doc_ids, np.asarray(vectors), qids, dataset.split(split),
                      opts.config.parsed_matryoshka_dims(), k=opts.k)


def _general(opts: TuneOptions, run: rundir.RunDir) -> dict[str, Any]:
    """Base and tuned on a second dataset: does the domain gain cost general ability?"""
    from retrieval.evaluate import evaluate
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load, search
    from retrieval.sources import resolve

    other = resolve(opts.general, strict=opts.strict)
    split = "test" if "test" in other.qrels else next(iter(other.qrels))
    queries, qrels = other.split_queries(split), other.split(split)
    spec = IndexSpec(batch_size=opts.config.batch_size_encode)
    base, tuned = load_model(opts.config.base), load_model(str(run.model_dir))
    folder = run.path / "general" / other.name
    base_index = build_or_load(base, opts.config.base, other.corpus, folder / "indexes" / "base", spec, source=other.source)
    sub = rundir.RunDir(folder)
    tuned_index = _tuned_index(tuned, other, sub, spec, base_index)
    runs = {"base": search(base_index, base, queries, opts.k, "base", progress=False),
            "tuned": search(tuned_index, tuned, queries, opts.k, "tuned", progress=False)}
    metrics = evaluate(qrels, runs)
    rundir.write_json(folder / "metrics.json", metrics)
    from retrieval.evaluate import per_query

    return {"name": f"{other.name} ({split}, {len(queries)} queries)", "metrics": metrics,
            "per_query": {name: per_query(qrels, r) for name, r in runs.items()}}


def _report(dataset: Dataset, opts: TuneOptions, run: rundir.RunDir, evaluation: dict, general: dict | None,
            geometry_md: str | None, fingerprints: dict, seconds: dict, widths: list[dict] | None = None) -> None:
    from retrieval import plots
    from retrieval.tune_report import seen_unseen, write_reports

    summary = json.loads((run.path / "finetune.json").read_text()) if (run.path / "finetune.json").exists() else {}
    figures = {"recall": "report_files/recall_at_k.png"}
    plots.recall_curves(rundir.read_curves(run), run.path / figures["recall"])
    if summary.get("dev_history"):
        figures["training"] = "report_files/training.png"
        plots.training_curve(summary.get("train_log", []), summary["dev_history"], run.path / figures["training"],
                             epoch_scale=float(opts.config.epochs), select=summary.get("select", "ndcg@10"))
    settings = {"data": opts.data, "split": evaluation["split"], "fingerprints": fingerprints,
                "finetune": dataclasses.asdict(opts.config), "fusion": opts.fusion, "k": opts.k,
                "dev_split": summary.get("dev_split"), "best_dev": summary.get("best_dev"),
                "mining": summary.get("mining"), "seconds": {**summary.get("seconds", {}), **seconds}}
    train_docs = {d for judged in dataset.qrels.get(opts.config.train_split, {}).values() for d, sc in judged.items() if sc > 0}
    per_query = rundir.read_per_query(run)
    split_rows = seen_unseen(per_query, dataset.split(evaluation["split"]), train_docs)
    settings["seen_unseen"] = evaluation["seen_unseen"] = split_rows
    rundir.write_info(run, data=opts.data, base_model=opts.config.base, tuned_model="model",
                      split=evaluation["split"], settings=settings, recommendation=evaluation.get("recommendation"),
                      data_path=str(Path(dataset.source).resolve()) if dataset.source and Path(dataset.source).exists() else None)
    ctx = {"recommendation": evaluation.get("recommendation"), "title": f"{opts.config.base} tuned on {dataset.name}", "seen_unseen": split_rows, "metrics": evaluation["metrics"],
           "comparison": evaluation["comparison"], "per_query": per_query,
           "queries": evaluation["queries"], "n_queries": len(evaluation["queries"]), "figures": figures,
           "general": general, "geometry_md": geometry_md, "settings": settings, "widths": widths}
    write_reports(run.path, ctx)
