"""Retrieval at each Matryoshka width: what a shorter embedding costs in nDCG@10 and buys in index size.

A model trained with ``--matryoshka-dims`` is meant to be served truncated: the first ``d``
coordinates of every vector, renormalised (:func:`index.build.truncate`), for queries and
documents alike. :func:`width_rows` measures that on a split with exact search at every width,
so the report can show, per width, the quality and the bytes of a flat index; ``retrieval
index build --dim d`` builds the index the row describes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.build import truncate


def truncated_run(doc_vectors: np.ndarray, doc_ids: Sequence[str], query_vectors: np.ndarray, qids: Sequence[str],
                  dim: int, k: int = 100, name: str = "dense"):
    """The ranx Run of exact inner-product search with documents and queries cut to their first ``dim``
    coordinates and renormalised (:func:`index.build.truncate`), the top ``k`` per query."""
    import faiss

    from retrieval.retriever import run_from_hits

    index = faiss.IndexFlatIP(dim)
    index.add(truncate(doc_vectors, dim))
    scores, rows = index.search(truncate(query_vectors, dim), min(k, len(doc_ids)))
    return run_from_hits(list(qids), [[doc_ids[i] for i in row if i >= 0] for row in rows], scores, name)


def width_rows(doc_vectors: np.ndarray, doc_ids: Sequence[str], query_vectors: np.ndarray, qids: Sequence[str],
               qrels: dict[str, dict[str, int]], dims: Sequence[int], k: int = 100) -> list[dict]:
    """One row per width (widest first): ``dim``, ``ndcg@10``, ``recall@100``, flat ``index_bytes``.

    Exact inner-product search over the truncated, renormalised vectors (:func:`truncated_run`);
    metrics by ranx on ``qrels`` (queries of ``qids`` that it judges). Widths above the vectors'
    own are refused.
    """
    from ranx import Qrels, evaluate

    from retrieval.evaluate import RANX_LOCK

    full = doc_vectors.shape[1]
    if any(not 1 <= d <= full for d in dims):
        raise ValueError(f"widths {sorted(dims)} do not fit embeddings of dimension {full}")
    judged = Qrels({q: qrels[q] for q in qids if q in qrels})
    judged_qids = [q for q in qids if q in qrels]
    keep = [i for i, q in enumerate(qids) if q in qrels]
    rows = []
    for dim in sorted(set(dims), reverse=True):
        run = truncated_run(doc_vectors, doc_ids, np.asarray(query_vectors)[keep], judged_qids, dim, k)
        with RANX_LOCK:  # ranx's numba kernels may not run in two threads at once
            metrics = evaluate(judged, run, ["ndcg@10", "recall@100"], make_comparable=True)
        rows.append({"dim": dim, "ndcg@10": float(metrics["ndcg@10"]), "recall@100": float(metrics["recall@100"]),
                     "index_bytes": int(doc_vectors.shape[0]) * dim * 4})
    return rows


def widths_markdown(rows: list[dict]) -> str:
    """The report's table: width, nDCG@10, Recall@100, flat index size, and the share of the full width's nDCG@10."""
    if not rows:
        return ""
    top = rows[0]["ndcg@10"] or float("nan")
    lines = ["| width | nDCG@10 | Recall@100 | flat index | nDCG@10 vs widest |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dim']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['index_bytes'] / 2**20:.1f} MiB | "
                     f"{r['ndcg@10'] / top:.1%} |")
    return "\n".join(lines)
