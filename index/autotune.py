"""Tune an approximate index's search knob to a target Recall@k against exact search.

The knob is ``nprobe`` for IVF indexes (any quantizer, Flat or PQ codes) and
``efSearch`` for HNSW; both are set through ``faiss.ParameterSpace``, the same
call :func:`index.store.load_index` uses to apply ``meta.search_params``, so
what is tuned here is what is served.

Recall is FAISS's "k-recall@k": ``|ANN top-k  ∩  exact top-k| / k``, averaged over
held-out query vectors; exact top-k comes from a brute-force inner-product search
(``faiss.knn``) over the indexed vectors. Without real query vectors, a sample
of the indexed vectors serves as queries, each one's own entry removed from both
lists (leave-one-out), so a vector never counts as finding itself.

Candidates are scanned in increasing order (powers of two) and the first that
reaches the target is kept: a higher target therefore never yields a smaller
value. If none reaches it, the largest candidate is returned with
``reached=False`` and the caller decides (the CLI warns).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import faiss
import numpy as np

logger = logging.getLogger(__name__)

EF_SEARCH_MAX = 2048


@dataclass
class AutotuneResult:
    """The chosen setting (``params``, ready for ``IndexMeta.search_params``) and how it was found."""

    params: dict[str, int]
    recall: float
    reached: bool
    target: float
    curve: list[tuple[int, float]] = field(default_factory=list)


def knob(index: faiss.Index) -> tuple[str, list[int]] | None:
    """The ParameterSpace name to tune and its candidate values, or ``None`` for exact indexes."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        nlist = ivf.nlist
        values = [v for v in (2**i for i in range(nlist.bit_length())) if v < nlist] + [nlist]
        return "nprobe", values
    if _find_hnsw(index) is not None:
        return "efSearch", [2**i for i in range(4, EF_SEARCH_MAX.bit_length())]
    return None


def _find_hnsw(index: faiss.Index) -> faiss.Index | None:
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index if isinstance(faiss.downcast_index(index), faiss.IndexHNSW) else None


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over rows of ``|found[:, :k] ∩ truth[:, :k]| / k`` (``-1`` slots never match)."""
    hits = [len(set(f[:k][f[:k] >= 0]) & set(t[:k])) for f, t in zip(found, truth)]
    return float(np.mean(hits)) / k


def held_out_queries(vectors: np.ndarray, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A sample of rows of ``vectors`` (as float32) and their row numbers, for leave-one-out tuning."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False))
    return np.ascontiguousarray(vectors[rows], dtype=np.float32), rows


def _drop_self(ids: np.ndarray, rows: np.ndarray | None, k: int) -> np.ndarray:
    if rows is None:
        return ids[:, :k]
    out = np.full((len(ids), k), -1, dtype=ids.dtype)
    for i, (row, own) in enumerate(zip(ids, rows)):
        kept = row[row != own][:k]
        out[i, : len(kept)] = kept
    return out


def autotune(
    index: faiss.Index,
    vectors: np.ndarray,
    target_recall: float = 0.95,
    k: int = 10,
    queries: np.ndarray | None = None,
    n_queries: int = 1000,
    seed: int = 0,
) -> AutotuneResult:
    """Find the smallest nprobe / efSearch whose Recall@``k`` on held-out queries reaches ``target_recall``.

    ``vectors`` are the indexed vectors in index order (as indexed: normalised if the
    index is cosine). ``queries``, if given, are real held-out query vectors (also as
    searched: normalised); otherwise ``n_queries`` indexed vectors are used leave-one-out.
    The index is left set to the chosen value.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    spec = knob(index)
    if spec is None:
        return AutotuneResult(params={}, recall=1.0, reached=True, target=target_recall)
    name, values = spec
    rows = None
    if queries is None:
        queries, rows = held_out_queries(vectors, n_queries, seed)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    extra = 0 if rows is None else 1
    kk = min(k + extra, index.ntotal)
    _, exact = faiss.knn(queries, np.ascontiguousarray(vectors, dtype=np.float32), kk, faiss.METRIC_INNER_PRODUCT)
    truth = _drop_self(exact, rows, k)
    space = faiss.ParameterSpace()
    curve: list[tuple[int, float]] = []
    for value in values:
        space.set_index_parameter(index, name, value)
        _, found = index.search(queries, kk)
        recall = recall_at_k(_drop_self(found, rows, k), truth, k)
        curve.append((value, recall))
        logger.info("%s=%d: recall@%d %.4f", name, value, k, recall)
        if recall >= target_recall:
            return AutotuneResult({name: value}, recall, True, target_recall, curve)
    logger.warning("%s up to %d reaches recall@%d %.4f < target %.4f", name, values[-1], k, curve[-1][1], target_recall)
    return AutotuneResult({name: values[-1]}, curve[-1][1], False, target_recall, curve)
