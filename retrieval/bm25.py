"""The lexical baseline every dense result is held against: BM25 with bm25s.

Settings follow the BEIR/Pyserini reference: k1=1.2, b=0.75, English stopwords,
Snowball (Porter2) stemming, documents as ``title + " " + text``.
"""

from __future__ import annotations

import logging

import bm25s
import numpy as np
import Stemmer
from ranx import Run

from retrieval.encode import doc_texts
from retrieval.retriever import run_from_hits

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its logger to DEBUG on import


def bm25_run(
    corpus: dict[str, dict[str, str]],
    queries: dict[str, str],
    k: int = 100,
    k1: float = 1.2,
    b: float = 0.75,
    name: str = "bm25",
    progress: bool = True,
) -> Run:
    """Index the corpus with BM25 and return each query's top-``k`` (zero scores dropped)."""
    stemmer = Stemmer.Stemmer("english")
    ids = list(corpus)
    tokens = bm25s.tokenize(doc_texts(corpus, ids), stopwords="en", stemmer=stemmer, show_progress=progress)
    model = bm25s.BM25(k1=k1, b=b)
    model.index(tokens, show_progress=progress)
    qids = list(queries)
    q_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    hits, scores = model.retrieve(q_tokens, k=min(k, len(ids)), show_progress=progress, n_threads=0)
    id_lists = [[ids[j] for j, s in zip(row, srow) if s > 0] for row, srow in zip(hits, scores)]
    kept = [np.asarray([s for s in srow if s > 0]) for srow in scores]
    return run_from_hits(qids, id_lists, kept, name)
