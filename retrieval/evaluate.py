"""Every number this project reports comes from ranx, through these few functions.

``METRICS`` is the standard table; :func:`evaluate` scores several runs against
one qrels, :func:`compare` adds ranx's paired significance test, and
:func:`per_query` gives the per-query scores behind wins/losses.
"""

from __future__ import annotations

import threading
import warnings

import ranx
from ranx import Qrels, Run

from retrieval.data import Qrels as QrelsDict

# ranx's numba kernels warn about an index cast on every first call; it is ranx's internals, not the user's data
warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")  # numba reports it from its own frame

METRICS = ["ndcg@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@100", "mrr@10", "map@100"]


_warmed: set[tuple[int, int]] = set()
# ranx's metric kernels are numba ``parallel=True`` functions, and numba's default threading layer
# aborts the process when two Python threads run them at once: every ranx call here (and in
# fusion, widths, recommend) holds this lock, the background warm-up included.
RANX_LOCK = threading.RLock()


def warm_up(background: bool = True, query_id_width: int = 8, doc_id_width: int = 8) -> threading.Thread | None:
    """Compile ranx's numba code now, in a daemon thread by default, so the first real call finds it done.

    ranx's metric kernels are cached on disk by numba (``cache=True``: beside ranx's sources, or
    in the user's cache folder, ``~/.cache/numba``, where those are read-only), but numba cannot
    cache the typed ``Dict``/``List`` code that building and reading a ``Run`` compiles, so every
    new process pays ~10 s on a 2-core CPU before its first score (measured: ``bench/ranx_first_call.py``). That code is
    compiled per id *width* (ranx holds ids as fixed-width numpy strings): inside
    :func:`evaluate` ids reach ranx at one fixed width (:class:`_Ids`), and the runs callers
    build carry their dataset's ids, so a job passes its longest query and document id lengths.
    The compilation then overlaps with loading and encoding (torch releases the GIL), and
    numba's compile lock makes an early real call wait for it instead of compiling twice.
    """
    key = (query_id_width, doc_id_width)
    if key in _warmed:
        return None
    _warmed.add(key)

    def run() -> None:
        with RANX_LOCK:
            _warm_up_calls(query_id_width, doc_id_width)

    if not background:
        run()
        return None
    thread = threading.Thread(target=run, name="ranx-warm-up", daemon=True)
    thread.start()
    return thread


def _warm_up_calls(query_id_width: int, doc_id_width: int) -> None:
    q1, q2 = "q" * query_id_width, "r" * query_id_width
    a_doc, b_doc = "a" * doc_id_width, "b" * doc_id_width
    qrels = {q1: {a_doc: 1}, q2: {b_doc: 1}}
    a = Run.from_dict({q1: {a_doc: 0.9, b_doc: 0.1}, q2: {a_doc: 0.5, b_doc: 0.4}}, name="a")
    b = Run.from_dict({q1: {b_doc: 0.9, a_doc: 0.1}, q2: {b_doc: 0.5}}, name="b")
    evaluate(qrels, {"a": a})
    per_query(qrels, a)
    compare(qrels, {"a": a, "b": b}, ["ndcg@10"])


def id_widths(queries, docs) -> dict[str, int]:
    """The ``warm_up`` arguments for a dataset: its longest query id and document id."""
    return {"query_id_width": max(map(len, queries), default=1), "doc_id_width": max(map(len, docs), default=1)}


ID_WIDTH = 10


class _Ids:
    """Fixed-width stand-ins for query and document ids, for ranx's eyes only.

    ranx turns ids into numpy unicode arrays, so numba compiles its code once per *id width*
    (``U4``, ``U9``, ...): a dataset with other id lengths than the last one recompiles, and a
    warm-up with made-up ids warms nothing. Every id handed to ranx here is a ``ID_WIDTH``-digit
    number instead, the same width for every dataset, so :func:`warm_up` compiles exactly what
    the real calls use. Scores do not depend on ids, and results keyed by query are mapped back.
    """

    def __init__(self) -> None:
        self.queries: dict[str, str] = {}
        self.docs: dict[str, str] = {}

    def query(self, qid: str) -> str:
        return self.queries.setdefault(qid, f"{len(self.queries):0{ID_WIDTH}d}")

    def doc(self, doc_id: str) -> str:
        return self.docs.setdefault(doc_id, f"{len(self.docs):0{ID_WIDTH}d}")


def to_qrels(qrels: QrelsDict, ids: _Ids | None = None) -> Qrels:
    ids = ids or _Ids()
    return Qrels.from_dict({ids.query(q): {ids.doc(d): r for d, r in docs.items()} for q, docs in qrels.items()})


def _comparable(qrels: QrelsDict, run: Run, name: str | None = None, ids: _Ids | None = None) -> Run:
    """A copy of ``run`` restricted to the judged queries (ids as ``ids`` maps them); one it lacks gets no results.

    ranx's own ``make_comparable`` edits the run in place; a copy keeps callers' runs whole.
    """
    ids = ids or _Ids()
    data = run.to_dict()
    kept = Run.from_dict({ids.query(q): {ids.doc(d): s for d, s in data.get(q, {}).items()} for q in qrels})
    kept.name = name or run.name
    return kept


def evaluate(qrels: QrelsDict, runs: dict[str, Run], metrics: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``{system: {metric: mean score}}`` over every judged query of ``qrels``."""
    metrics = metrics or METRICS
    ids = _Ids()
    judged = to_qrels(qrels, ids)
    out = {}
    for name, run in runs.items():
        kept = _comparable(qrels, run, ids=ids)
        with RANX_LOCK:
            scores = ranx.evaluate(judged, kept, metrics, make_comparable=True)
        scores = scores if isinstance(scores, dict) else {metrics[0]: scores}
        out[name] = {m: float(scores[m]) for m in metrics}
    return out


def per_query(qrels: QrelsDict, run: Run, metric: str = "ndcg@10") -> dict[str, float]:
    """Each judged query's score (zero where the run has no result for it)."""
    ids = _Ids()
    judged = to_qrels(qrels, ids)
    kept = _comparable(qrels, run, ids=ids)
    with RANX_LOCK:
        ranx.evaluate(judged, kept, [metric], make_comparable=True, save_results_in_run=True)
    got = {q: float(v) for q, v in kept.scores[metric].items()}
    return {q: got.get(ids.query(q), 0.0) for q in qrels}


def compare(
    qrels: QrelsDict,
    runs: dict[str, Run],
    metrics: list[str] | None = None,
    stat_test: str = "student",
    max_p: float = 0.05,
):
    """ranx ``compare``: each pair of runs with a paired significance test (p-values in ``to_dict()``)."""
    ids = _Ids()
    judged = to_qrels(qrels, ids)
    named = [_comparable(qrels, run, name, ids) for name, run in runs.items()]
    with RANX_LOCK:
        return ranx.compare(judged, named, metrics or METRICS, stat_test=stat_test, max_p=max_p, make_comparable=True,
                            rounding_digits=4)
