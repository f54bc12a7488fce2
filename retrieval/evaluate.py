"""Every number this project reports comes from ranx, through these few functions.

``METRICS`` is the standard table; :func:`evaluate` scores several runs against
one qrels, :func:`compare` adds ranx's paired significance test, and
:func:`per_query` gives the per-query scores behind wins/losses.
"""

from __future__ import annotations

import warnings

import ranx
from ranx import Qrels, Run

from retrieval.data import Qrels as QrelsDict

# ranx's numba kernels warn about an index cast on every first call; it is ranx's internals, not the user's data
warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")  # numba reports it from its own frame

METRICS = ["ndcg@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@100", "mrr@10", "map@100"]


def to_qrels(qrels: QrelsDict) -> Qrels:
    return Qrels.from_dict({q: dict(docs) for q, docs in qrels.items()})


def _comparable(qrels: QrelsDict, run: Run, name: str | None = None) -> Run:
    """A copy of ``run`` restricted to the judged queries; one it lacks gets no results (scores zero).

    ranx's own ``make_comparable`` edits the run in place; a copy keeps callers' runs whole.
    """
    data = run.to_dict()
    kept = Run.from_dict({q: dict(data.get(q, {})) for q in qrels})
    kept.name = name or run.name
    return kept


def evaluate(qrels: QrelsDict, runs: dict[str, Run], metrics: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``{system: {metric: mean score}}`` over every judged query of ``qrels``."""
    metrics = metrics or METRICS
    judged = to_qrels(qrels)
    out = {}
    for name, run in runs.items():
        scores = ranx.evaluate(judged, _comparable(qrels, run), metrics, make_comparable=True)
        scores = scores if isinstance(scores, dict) else {metrics[0]: scores}
        out[name] = {m: float(scores[m]) for m in metrics}
    return out


def per_query(qrels: QrelsDict, run: Run, metric: str = "ndcg@10") -> dict[str, float]:
    """Each judged query's score (zero where the run has no result for it)."""
    judged = to_qrels(qrels)
    kept = _comparable(qrels, run)
    ranx.evaluate(judged, kept, [metric], make_comparable=True, save_results_in_run=True)
    got = {q: float(v) for q, v in kept.scores[metric].items()}
    return {q: got.get(q, 0.0) for q in qrels}


def compare(
    qrels: QrelsDict,
    runs: dict[str, Run],
    metrics: list[str] | None = None,
    stat_test: str = "student",
    max_p: float = 0.05,
):
    """ranx ``compare``: each pair of runs with a paired significance test (p-values in ``to_dict()``)."""
    named = [_comparable(qrels, run, name) for name, run in runs.items()]
    return ranx.compare(
        to_qrels(qrels), named, metrics or METRICS, stat_test=stat_test, max_p=max_p, make_comparable=True, rounding_digits=4
    )
