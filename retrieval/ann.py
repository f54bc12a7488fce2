"""Approximate indexes as deployed: tune their search knob, and measure what they cost.

Two things every ANN index of this project goes through, whichever command built it:

* :func:`autotune_stored` sets ``nprobe`` / ``efSearch`` to the smallest value reaching a
  target Recall@10 against exact search (:mod:`index.autotune`), measured on the dataset's
  *queries*, which are not in the index (held out by construction), and records it in
  ``meta.json`` so every later load serves that setting.
* :func:`exact_twin` is a brute-force index over the same stored vectors, so a report
  can put "exact" and "as deployed" side by side: the difference in nDCG@10 and
  Recall@100 is what the approximation costs, with the encoder held fixed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import faiss
import numpy as np

from index import StoredIndex
from index.build import normalize
from index.meta import META_FILE
from index.atomic import write_text
from index.autotune import AutotuneResult, autotune
from retrieval.encode import DEFAULT_BATCH_SIZE

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

TUNING_QUERIES = 1000


def is_approximate(stored: StoredIndex) -> bool:
    """True unless the index is a plain (exact) flat index."""
    return not isinstance(faiss.downcast_index(stored.index), faiss.IndexFlat)


def record_meta(stored: StoredIndex, **fields) -> None:
    """Rewrite ``meta.json`` of a saved index with ``fields`` changed.

    Only fields that describe *how* the index is used (search parameters, backend)
    should change this way; the data files and their checksums are untouched.
    """
    if stored.path is None:
        raise ValueError("the index has no directory to record its metadata in")
    for name, value in fields.items():
        setattr(stored.meta, name, value)
    write_text(stored.path / META_FILE, stored.meta.to_json())


def autotune_stored(
    stored: StoredIndex,
    model: SentenceTransformer,
    queries: list[str],
    target_recall: float = 0.95,
    batch_size: int = DEFAULT_BATCH_SIZE,
    backend: str | None = None,
) -> AutotuneResult | None:
    """Tune ``stored``'s knob to ``target_recall`` and record it; ``None`` when there is nothing to tune.

    ``queries`` (texts; the first :data:`TUNING_QUERIES` are used) are encoded with the
    index's query prompt. Without queries, indexed vectors serve leave-one-out. An
    index saved without ``embeddings.npy`` cannot be measured and is left as it is.
    """
    from index.autotune import knob
    from retrieval.backends import encode_with_backend

    if target_recall <= 0 or knob(stored.index) is None:
        return None
    vectors = stored.embeddings()
    if vectors is None:
        logger.warning("%s: saved without embeddings.npy, so its recall cannot be measured; not tuned", stored.path)
        return None
    texts = queries[:TUNING_QUERIES]
    query_vectors = None
    if texts:
        query_vectors = normalize(encode_with_backend(model, texts, stored.meta.query_prompt, batch_size,
                                                      progress=False, backend=backend))
    result = autotune(stored.index, np.asarray(vectors), target_recall, queries=query_vectors)
    if stored.path is not None and result.params != stored.meta.search_params:
        record_meta(stored, search_params=result.params)
    return result


def exact_twin(stored: StoredIndex) -> StoredIndex | None:
    """A flat inner-product index over ``stored``'s saved vectors (same metadata, factory ``Flat``).

    ``None`` when the vectors were not saved. The twin lives in memory only.
    """
    vectors = stored.embeddings()
    if vectors is None:
        return None
    flat = faiss.IndexFlatIP(stored.meta.dim)
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    meta = type(stored.meta).from_json(stored.meta.to_json())
    meta.factory, meta.search_params = "Flat", {}
    return StoredIndex(index=flat, meta=meta, path=None)
