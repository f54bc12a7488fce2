"""Search a set of systems on a split, score them with ranx and write the run directory's files.

One place does it for every caller: the main job's test evaluation (``jobs.tune``), its
forgetting guard on a second dataset, ``retrieval finetune``'s test evaluation
(``finetune.modes``) and the app's test fixture. What one of them writes, the others write
the same way, and the app and trec_eval read all of them alike:

* ``metrics.json``: ``{system: {metric: value}}`` (:func:`retrieval.evaluate.evaluate`);
* ``comparison.json``: ranx's paired comparison of every pair (two systems or more);
* ``per_query.json``, ``curves.json``: :func:`retrieval.rundir.per_query_payload`,
  :func:`retrieval.rundir.curves`;
* ``runs/<system>.trec``: each run in TREC format, ties already broken (so ranx, the JSON
  files and trec_eval agree), written atomically.

A system is a model and the index its document side built; :func:`document_index` finds or
builds that index, reusing the base index when a model's document side *is* the base model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.atomic import atomic_path
from retrieval import rundir

if TYPE_CHECKING:
    from ranx import Run
    from sentence_transformers import SentenceTransformer

    from index import StoredIndex
    from retrieval.retriever import IndexSpec

Qrels = dict[str, dict[str, int]]


def document_index(model: SentenceTransformer, model_name: str, corpus: dict[str, dict[str, str]], folder: str | Path,
                   spec: IndexSpec | None = None, *, reuse: StoredIndex | None = None, source: str = "",
                   progress: bool = True) -> StoredIndex:
    """The index ``model`` searches: ``reuse`` when its document side built it, else the one in ``folder``.

    ``folder``'s index is loaded when it matches the model, corpus and ``spec``, and (re)built
    otherwise (:func:`retrieval.retriever.build_or_load`). A query-side tuned model (whose
    document route is the base model) thus searches the base index and nothing is re-encoded.
    """
    from retrieval.models import model_fingerprint
    from retrieval.retriever import build_or_load

    if reuse is not None and model_fingerprint(model, "document") == reuse.meta.model_fingerprint:
        return reuse
    return build_or_load(model, model_name, corpus, folder, spec, progress=progress, source=source)


def search_systems(systems: Mapping[str, tuple[SentenceTransformer, StoredIndex]], queries: dict[str, str],
                   k: int = 100) -> dict[str, Run]:
    """``{name: Run}``: each system's top ``k`` for ``queries``, ties broken by document id."""
    from retrieval.fusion import break_ties
    from retrieval.retriever import search

    return {name: break_ties(search(stored, model, queries, k, name, progress=False))
            for name, (model, stored) in systems.items()}


def write_evaluation(run: rundir.RunDir | str | Path, qrels: Qrels, runs: dict[str, Run],
                     metrics: list[str] | None = None) -> dict[str, Any]:
    """Score ``runs`` on ``qrels`` and write the run directory's evaluation files (module docstring).

    Returns ``{"metrics": ..., "comparison": ...}`` (``comparison`` None for a single system).
    Runs must already hold only the queries to score; a query of ``qrels`` missing from a run
    counts as retrieving nothing, as in trec_eval.
    """
    from retrieval.evaluate import compare, evaluate

    run = rundir.as_rundir(run)
    scores = evaluate(qrels, runs, metrics) if metrics else evaluate(qrels, runs)
    comparison = None
    if len(runs) > 1:
        comparison = json.loads(json.dumps(compare(qrels, runs).to_dict(), default=float))
    rundir.write_json(run.metrics_json, scores)
    if comparison is not None:
        rundir.write_json(run.comparison_json, comparison)
    rundir.write_json(run.per_query_json, rundir.per_query_payload(qrels, runs))
    rundir.write_json(run.curves_json, rundir.curves(qrels, runs))
    for name, r in runs.items():
        with atomic_path(run.runs_dir / f"{name}.trec") as tmp:
            r.save(str(tmp), kind="trec")
    return {"metrics": scores, "comparison": comparison}


def evaluate_systems(run: rundir.RunDir | str | Path, systems: Mapping[str, tuple[SentenceTransformer, StoredIndex]],
                     queries: dict[str, str], qrels: Qrels, k: int = 100) -> dict[str, Any]:
    """:func:`search_systems` then :func:`write_evaluation`: the whole evaluation of dense systems on one split."""
    return write_evaluation(run, qrels, search_systems(systems, queries, k))
