"""Turn documents and queries into vectors with a sentence-transformers model.

Documents are embedded as BEIR does, ``title + " " + text`` stripped, cut at the
model's ``max_seq_length``. Optional prompts (``"query: "``/``"passage: "`` for
e5, an instruction for bge) are prepended by sentence-transformers; they are
recorded in the index metadata because they change the vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_BATCH_SIZE = 64


def doc_text(doc: dict[str, str]) -> str:
    return f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()


def doc_texts(corpus: dict[str, dict[str, str]], ids: Iterable[str] | None = None) -> list[str]:
    return [doc_text(corpus[i]) for i in (corpus if ids is None else ids)]


def corpus_fingerprint(corpus: dict[str, dict[str, str]]) -> str:
    """A hash of ids, titles and texts in corpus order; the same corpus gives the same index."""
    digest = hashlib.sha256()
    for doc_id, doc in corpus.items():
        for part in (doc_id, doc.get("title") or "", doc.get("text") or ""):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x1f")
    return digest.hexdigest()[:16]


def texts_fingerprint(texts: list[str], prompt: str | None = None) -> str:
    """A hash of texts in order (and the prompt they are encoded with): what a resumable encode or a calibration sample is keyed on."""
    digest = hashlib.sha256((prompt or "").encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:16]


def encode(
    model: SentenceTransformer,
    texts: list[str],
    prompt: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    role: str = "document",
) -> np.ndarray:
    """Embed ``texts`` as ``role`` (``"query"`` or ``"document"``): float32, not normalised (indexes normalise).

    Goes through ``encode_query``/``encode_document`` so asymmetric models (a
    ``Router`` with query and document routes) use the right route, and models
    that define ``query``/``document`` prompts get them when ``prompt`` is None.
    Batches are length-sorted by sentence-transformers.
    """
    if role not in ("query", "document"):
        raise ValueError(f"role must be 'query' or 'document', not {role!r}")
    if not texts:
        from retrieval.models import embedding_dim

        dim = embedding_dim(model)
        return np.zeros((0, dim), dtype=np.float32)
    method = model.encode_query if role == "query" else model.encode_document
    vectors = method(
        texts,
        prompt=prompt or None,
        batch_size=batch_size,
        show_progress_bar=progress,
        convert_to_numpy=True,
        normalize_embeddings=False,
    )
    return np.asarray(vectors, dtype=np.float32)
