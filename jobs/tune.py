"""The main job, ``retrieval tune``: from a domain dataset to a tuned model, its index and a before/after report.

Stages (each skipped when its output exists and matches its inputs, :mod:`jobs.stages`):

1. load the data;
2. fine-tune (:func:`finetune.train.finetune`): base index (reused when it matches),
   mining, training (resumes from its last checkpoint), export of ``RUN/model``;
   skipped whole when ``stages.json`` records the same settings and data fingerprints;
3. evaluate base, tuned, BM25 and the hybrids on the test split (written by
   :func:`retrieval.systems.write_evaluation`), and the dev queries' evidence for the
   recommendation;
4. optionally the forgetting guard on a second dataset (``--general``);
5. optionally the Matryoshka widths (``--matryoshka-dims``);
6. optionally the geometry of base vs tuned (:func:`retrieval.geometry_job.run_geometry`);
7. the report (:mod:`jobs.tune_report`): ``report.md``, ``report.html``, ``run.json``.

The base model is read from disk once per job and the tuned one once after training
(:class:`Models`); both indexes are loaded once (:class:`Job`). The test split is
evaluated once, here (the fine-tuning stage skips its own). The layout is
:mod:`retrieval.rundir`'s, which the app reads.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from jobs.stages import cached, model_stamp, qrels_fingerprint, record, recorded
from retrieval import rundir
from retrieval.data import Dataset
from retrieval.encode import corpus_fingerprint
from retrieval.stages import Stages

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
    geometry: bool = False  # geometry of base vs tuned into RUN/geometry and the report (the CLI turns it on)


class Job:
    """One run of the main job: its options, data and run directory, and what it loads once."""

    def __init__(self, opts: TuneOptions, dataset: Dataset) -> None:
        from retrieval.retriever import IndexSpec

        self.opts, self.config, self.dataset = opts, opts.config, dataset
        self.run = rundir.RunDir(Path(opts.out))
        from retrieval.backends import auto_backend

        backend, why = auto_backend(precision=opts.config.precision)
        logger.info("documents are encoded with backend %s (%s)", backend, why)
        self.spec = IndexSpec(batch_size=opts.config.batch_size_encode, backend=backend)
        self.split = opts.config.test_split or "test"

    @cached_property
    def base(self):
        from retrieval.models import load_model

        return load_model(self.config.base)

    @cached_property
    def tuned(self):  # read only after the fine-tuning stage has written it
        from retrieval.models import load_model

        return load_model(str(self.run.model_dir))

    @cached_property
    def base_index(self):
        from retrieval.retriever import build_or_load

        return build_or_load(self.base, self.config.base, self.dataset.corpus, self.run.base_index, self.spec,
                             source=self.dataset.source)

    @cached_property
    def tuned_index(self):
        from retrieval.systems import document_index

        return document_index(self.tuned, str(self.run.model_dir), self.dataset.corpus, self.run.tuned_index, self.spec,
                              reuse=self.base_index, source=self.dataset.source)


def tune(opts: TuneOptions) -> dict[str, Any]:
    """Run the main job; return ``{"metrics", "seconds", "run_dir", "general", "recommendation", "seen_unseen"}``."""
    from retrieval.evaluate import id_widths, warm_up
    from retrieval.sources import resolve

    stages = Stages(4 + bool(opts.general) + bool(opts.geometry) + bool(opts.config.parsed_matryoshka_dims()), logger)
    job = Job(opts, stages.run("load data", resolve, opts.data, strict=opts.strict))
    warm_up(**id_widths(job.dataset.queries, job.dataset.corpus))  # ranx's compilation, overlapped with training
    run, config = job.run, job.config
    fingerprints = {"corpus": corpus_fingerprint(job.dataset.corpus),
                    "qrels": {s: qrels_fingerprint(q) for s, q in sorted(job.dataset.qrels.items())},
                    "settings": config.fingerprint()}
    stages.run("fine-tune", _finetune, job, fingerprints)
    inputs = {**fingerprints, "k": opts.k, "fusion": opts.fusion, "test_split": config.test_split,
              "model": model_stamp(run.model_dir)}
    evaluation = stages.run("evaluate base, tuned, BM25, hybrid", cached, run, "evaluate", inputs, _evaluate, job,
                            outputs=(run.metrics_json, run.comparison_json, run.per_query_json, run.curves_json))
    general = (stages.run("forgetting guard", cached, run, "general", {**inputs, "general": opts.general}, _general, job)
               if opts.general else None)
    evaluation["recommendation"] = _recommend(evaluation, general)
    widths = (stages.run("matryoshka widths", cached, run, "widths", inputs, _widths, job)
              if config.parsed_matryoshka_dims() else None)
    geometry_inputs = {k: v for k, v in inputs.items() if k not in ("k", "fusion")}  # geometry reads no run
    geometry_md = (stages.run("geometry", cached, run, "geometry", geometry_inputs, _geometry, job,
                              outputs=(run.geometry_json,)) if opts.geometry else None)
    stages.run("report", _report, job, evaluation, general, geometry_md, fingerprints, stages.seconds, widths)
    return {"metrics": evaluation["metrics"], "seconds": stages.seconds, "run_dir": run.path,
            "general": {k: v for k, v in general.items() if k != "per_query"} if general else None,
            "recommendation": evaluation.get("recommendation"), "seen_unseen": evaluation.get("seen_unseen")}


def _finetune(job: Job, fingerprints: dict) -> None:
    from finetune.train import finetune

    run = job.run
    if recorded(run, "finetune") == fingerprints and (run.model_dir / "modules.json").exists():
        logger.info("fine-tuned model in %s matches settings and data: skipped", run.model_dir)
        return
    # the evaluate stage scores the test split (with BM25 and the hybrids): not twice
    finetune(job.dataset, dataclasses.replace(job.config, test_split=""), run.path, base_index=run.base_index,
             base_model=job.base)
    record(run, "finetune", fingerprints)
    if not job.opts.keep_checkpoints and (run.path / "checkpoints").exists():  # the exported model is what the run keeps
        import shutil

        shutil.rmtree(run.path / "checkpoints")


def _evaluate(job: Job) -> dict[str, Any]:
    """Test split: every system scored and written; dev split: per-query evidence for the recommendation."""
    from finetune.dev_split import dev_split
    from retrieval.evaluate import evaluate, per_query
    from retrieval.systems import write_evaluation

    c, dataset = job.config, job.dataset
    queries, qrels = dataset.split_queries(job.split), dataset.split(job.split)
    dev = dev_split(dataset, c.train_split, c.dev_split, c.dev_fraction, c.seed)
    dev_queries = {q: dataset.queries[q] for q in dev.dev if q in dataset.queries and q not in queries}
    every = _search(job, {**queries, **dev_queries})
    runs = {name: _restrict(r, queries, name) for name, r in every.items()}
    written = write_evaluation(job.run, qrels, {name: runs[name] for name in ("base", "tuned", "bm25", "hybrid")})
    labels = {"base": "base", "tuned": "tuned", "base+bm25": "base+bm25", "hybrid": "tuned+bm25"}
    evidence = {}
    for group, qids in dev.groups().items():
        group_qrels = {q: dev.dev[q] for q in qids if q in dev_queries}
        if group_qrels:
            evidence[group] = {label: per_query(group_qrels, every[name]) for name, label in labels.items()}
    base_bm25 = evaluate(qrels, {"base+bm25": runs["base+bm25"]})["base+bm25"]
    return {**written, "split": job.split, "dev": evidence, "dev_how": dev.how,
            "extra_metrics": {"base+bm25": base_bm25}}


def _search(job: Job, queries: dict[str, str]) -> dict[str, Any]:
    """base, tuned, BM25, tuned+BM25 ("hybrid") and base+BM25 runs for ``queries``, each system searched once."""
    from retrieval.bm25 import bm25_run
    from retrieval.fusion import break_ties, hybrid
    from retrieval.systems import search_systems

    runs = search_systems({"base": (job.base, job.base_index), "tuned": (job.tuned, job.tuned_index)}, queries,
                          job.opts.k)
    runs["bm25"] = break_ties(bm25_run(job.dataset.corpus, queries, job.opts.k, progress=False))
    # hybrids' ties broken by their dense run before anything is scored or written (ranx and trec_eval agree)
    runs["hybrid"] = break_ties(hybrid([runs["bm25"], runs["tuned"]], method=job.opts.fusion), by=runs["tuned"])
    runs["base+bm25"] = break_ties(hybrid([runs["bm25"], runs["base"]], method=job.opts.fusion, name="base+bm25"),
                                   by=runs["base"])
    return runs


def _restrict(run, queries: dict[str, str], name: str):
    from ranx import Run

    data = run.to_dict()
    kept = Run.from_dict({q: data[q] for q in queries if q in data})
    kept.name = name
    return kept


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


def _general(job: Job) -> dict[str, Any]:
    """Base and tuned on a second dataset, written under ``RUN/general/<name>``: does the domain gain cost general ability?"""
    from retrieval.evaluate import per_query
    from retrieval.retriever import build_or_load
    from retrieval.sources import resolve
    from retrieval.systems import document_index, search_systems, write_evaluation

    other = resolve(job.opts.general, strict=job.opts.strict)
    split = "test" if "test" in other.qrels else next(iter(other.qrels))
    queries, qrels = other.split_queries(split), other.split(split)
    sub = rundir.RunDir(job.run.path / "general" / other.name)
    base_index = build_or_load(job.base, job.config.base, other.corpus, sub.base_index, job.spec, source=other.source)
    tuned_index = document_index(job.tuned, str(job.run.model_dir), other.corpus, sub.tuned_index, job.spec,
                                 reuse=base_index, source=other.source)
    runs = search_systems({"base": (job.base, base_index), "tuned": (job.tuned, tuned_index)}, queries, job.opts.k)
    metrics = write_evaluation(sub, qrels, runs)["metrics"]
    return {"name": f"{other.name} ({split}, {len(queries)} queries)", "metrics": metrics,
            "per_query": {name: per_query(qrels, r) for name, r in runs.items()}}


def _widths(job: Job) -> list[dict]:
    """The tuned model at each ``--matryoshka-dims`` width on the test split (:func:`retrieval.widths.width_rows`)."""
    import numpy as np

    from retrieval.encode import encode
    from retrieval.widths import width_rows

    queries = job.dataset.split_queries(job.split)
    qids = list(queries)
    vectors = encode(job.tuned, [queries[q] for q in qids], None, job.config.batch_size_encode, False, "query")
    stored = job.tuned_index
    return width_rows(np.asarray(stored.vectors()), stored.meta.doc_ids, np.asarray(vectors), qids,
                      job.dataset.split(job.split), job.config.parsed_matryoshka_dims(), k=job.opts.k)


def _geometry(job: Job) -> str | None:
    """Geometry of base vs tuned over the run's own indexes (nothing re-encoded but queries), into RUN/geometry.

    The library call (:func:`retrieval.geometry_job.run_geometry`) with the job's loaded models:
    plots drawn once, with the report's labels. Bad data or a mismatching index skips the
    section with a warning; the rest of the run is still worth reporting.
    """
    from index import IndexIntegrityError, IndexMismatchError
    from retrieval.errors import DataError, UsageError
    from retrieval.geometry_job import GeometryOptions, run_geometry

    run, base_name = job.run, job.config.base
    tuned_name = str(run.model_dir)
    options = GeometryOptions(split=job.split, index_dir=run.indexes)
    display = {base_name: f"base ({base_name})", tuned_name: "tuned"}
    try:
        output = run_geometry(job.dataset, {base_name: job.base, tuned_name: job.tuned}, run.geometry_dir, options,
                              display=display, relative_to=run.path)
    except (DataError, UsageError, IndexMismatchError, IndexIntegrityError, FileNotFoundError) as err:
        logger.warning("geometry skipped: %s", err)
        return None
    return output.markdown


def _report(job: Job, evaluation: dict, general: dict | None, geometry_md: str | None, fingerprints: dict,
            seconds: dict, widths: list[dict] | None = None) -> None:
    from jobs.tune_report import write_run_report

    write_run_report(job.run, job.dataset, job.opts, evaluation, general, geometry_md, fingerprints, seconds, widths)
