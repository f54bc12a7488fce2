"""Dense retrieval: index a corpus with a model (or reuse the index), search, return ranx runs.

The index directory is the cache: :func:`build_or_load` re-encodes only when no
index exists or the one there was made from another model, corpus or setting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ranx import Run

from index import IndexMeta, IndexMismatchError, StoredIndex, build_index, load_index, save_index
from index.build import normalize, truncate
from index.store import stores_vectors
from retrieval.encode import DEFAULT_BATCH_SIZE, corpus_fingerprint, doc_texts, encode
from retrieval.models import embedding_dim, model_fingerprint

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# Models read at most a few hundred tokens (MiniLM: 256, most others 512, about 2,000-3,000
# characters); tokenising megabytes of query text only to drop it costs seconds and memory.
MAX_QUERY_CHARS = 8192


@dataclass
class IndexSpec:
    """How a corpus is turned into an index; every field changes the index."""

    factory: str = "Flat"
    query_prompt: str | None = None
    document_prompt: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    save_embeddings: bool = True
    dim: int | None = None  # Matryoshka: index the first ``dim`` coordinates, renormalised (None: full width)
    # how documents are encoded (retrieval.backends: "torch" float32, "torch-bf16" bf16 weights); recorded in the
    # metadata, not part of the match: any backend's index serves a matching model (they agree within 0.001 nDCG@10)
    backend: str = "torch"


def expectation(model: SentenceTransformer, corpus: dict, spec: IndexSpec) -> dict:
    full = embedding_dim(model)
    if spec.dim is not None and not 1 <= spec.dim <= full:
        from retrieval.errors import UsageError

        raise UsageError(f"cannot truncate the embeddings of dimension {full} to {spec.dim}")
    return {
        "model_fingerprint": model_fingerprint(model, "document"),
        "corpus_fingerprint": corpus_fingerprint(corpus),
        "dim": spec.dim or full,
        "normalized": True,
        "query_prompt": spec.query_prompt,
        "document_prompt": spec.document_prompt,
        "factory": spec.factory,
        "truncate_dim": spec.dim,
    }


def find_matching_index(
    model: SentenceTransformer,
    corpus: dict[str, dict[str, str]],
    spec: IndexSpec | None,
    folders: Iterable[str | Path],
) -> StoredIndex | None:
    """The first of ``folders`` holding an index this model's document encoder built from ``corpus`` with ``spec``.

    Folders without an index, and indexes made from another model, corpus or setting, are
    skipped; None when nothing matches. A damaged index is still an error
    (:class:`~index.IndexIntegrityError`), not a miss.
    """
    expect = expectation(model, corpus, spec or IndexSpec())
    for folder in map(Path, folders):
        if (folder / "meta.json").exists():
            try:
                return load_index(folder, expect=expect)
            except IndexMismatchError:
                continue
    return None


def load_if_matching(folder: str | Path, model: SentenceTransformer, corpus: dict[str, dict[str, str]],
                     spec: IndexSpec | None = None, *, backend: str = "torch", overwrite: bool = False) -> StoredIndex | None:
    """The index in ``folder`` when it matches model, corpus, ``spec`` and ``backend``; None when there is none.

    A mismatch is an :class:`~index.IndexMismatchError` naming what differs, unless
    ``overwrite`` (then None: the caller builds over it).
    """
    from index.store import read_meta

    folder = Path(folder)
    if not (folder / "meta.json").exists():
        return None
    try:
        found = read_meta(folder).backend
        if found != backend:
            raise IndexMismatchError(f"{folder}: index does not match: backend: index has {found!r}, expected {backend!r}")
        return load_index(folder, expect=expectation(model, corpus, spec or IndexSpec()))
    except IndexMismatchError:
        if not overwrite:
            raise
        return None


def build_or_load(
    model: SentenceTransformer,
    model_name: str,
    corpus: dict[str, dict[str, str]],
    path: str | Path,
    spec: IndexSpec | None = None,
    rebuild: bool = True,
    progress: bool = True,
    source: str = "",
) -> StoredIndex:
    """Return the index at ``path`` if it matches; otherwise encode and build it.

    With ``rebuild=False`` a mismatching index on disk raises instead of being
    replaced (for paths the user named, where silently overwriting would surprise).
    """
    spec = spec or IndexSpec()
    path = Path(path)
    expect = expectation(model, corpus, spec)
    if (path / "meta.json").exists():
        try:
            stored = load_index(path, expect=expect)
            logger.info("reusing index at %s (%d documents)", path, len(stored))
            return stored
        except IndexMismatchError as err:
            if not rebuild:
                raise
            logger.warning("%s; rebuilding", err)
    from retrieval.backends import bulk_context

    ids = list(corpus)
    with bulk_context(model, spec.backend):
        vectors = encode(model, doc_texts(corpus, ids), spec.document_prompt, spec.batch_size, progress, role="document")
    vectors = truncate(vectors, spec.dim) if spec.dim else normalize(vectors)
    index = build_index(vectors, spec.factory, normalized=False)
    meta = IndexMeta(model=model_name, doc_ids=ids, corpus_source=source, backend=spec.backend, **expect)
    keep = spec.save_embeddings and not stores_vectors(index)  # a flat index holds them already: no second copy
    return save_index(path, index, meta, vectors if keep else None)


def check_model(stored: StoredIndex, model: SentenceTransformer) -> None:
    """Refuse to pair an index with a model whose document encoder did not build it."""
    if stored.meta.model_fingerprint != model_fingerprint(model, "document"):
        raise IndexMismatchError(
            f"{stored.path}: index was built with model {stored.meta.model!r} "
            f"(document weights {stored.meta.model_fingerprint}); this model's document weights are "
            f"{model_fingerprint(model, 'document')}"
        )


def run_from_hits(qids: list[str], ids: list[list[str]], scores: np.ndarray, name: str) -> Run:
    """A ranx Run from per-query id lists and the score matrix FAISS returned."""
    data = {q: {d: float(s) for d, s in zip(row_ids, row_scores)} for q, row_ids, row_scores in zip(qids, ids, scores)}
    run = Run.from_dict(data)
    run.name = name
    return run


def cap_queries(texts: list[str], limit: int | None = None) -> list[str]:
    """``texts`` cut to ``limit`` (default :data:`MAX_QUERY_CHARS`) characters, with a warning counting the cut ones."""
    limit = limit or MAX_QUERY_CHARS
    long = sum(len(t) > limit for t in texts)
    if long:
        logger.warning("%d query text(s) longer than %d characters; cut to that length before encoding", long, limit)
    return [t[:limit] for t in texts]


def search(
    stored: StoredIndex,
    model: SentenceTransformer,
    queries: dict[str, str],
    k: int = 100,
    name: str = "dense",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Run:
    """Encode ``queries`` with the index's query prompt and return the top-``k`` as a Run.

    The model's *document* side must be the one that built the index (a model tuned
    on the query side only searches its base model's index). Against a Matryoshka-truncated
    index (``meta.truncate_dim``) the full-width query vectors are cut to the index's ``dim``
    and renormalised, as the documents were (:meth:`index.StoredIndex.search` does it).
    """
    check_model(stored, model)
    qids = list(queries)
    vectors = encode(model, cap_queries([queries[q] for q in qids]), stored.meta.query_prompt, batch_size, progress, role="query")
    ids, scores = stored.search(vectors, k)
    return run_from_hits(qids, ids, scores, name)
