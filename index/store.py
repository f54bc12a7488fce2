"""Save and load an index directory, refusing a wrong pairing or a damaged file.

Layout of a saved index::

    DIR/index.faiss      the FAISS index (faiss.write_index)
    DIR/embeddings.npy   the vectors as indexed (optional; lets later stages reuse them)
    DIR/meta.json        IndexMeta, with sha256 checksums of the two files above
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.atomic import atomic_dir, file_sha256
from index.build import normalize
from index.meta import META_FILE, IndexIntegrityError, IndexMeta, IndexMismatchError

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
EMBEDDINGS_FILE = "embeddings.npy"


@dataclass
class StoredIndex:
    """A FAISS index together with the metadata it was saved with."""

    index: faiss.Index
    meta: IndexMeta
    path: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` document ids and scores for each query vector (best first).

        Query vectors are normalised like the documents were. Slots FAISS leaves
        empty (``-1``, fewer than ``k`` hits) are dropped from the id lists.
        """
        q = normalize(queries) if self.meta.normalized else np.ascontiguousarray(queries, dtype=np.float32)
        if q.shape[1] != self.meta.dim:
            raise IndexMismatchError(f"query vectors have dimension {q.shape[1]}, the index has {self.meta.dim}")
        k = min(k, len(self))
        scores, idx = self.index.search(q, k)
        ids = self.meta.doc_ids
        return [[ids[j] for j in row if j >= 0] for row in idx], scores

    def embeddings(self) -> np.ndarray | None:
        """The indexed vectors if they were saved (memory-mapped), else ``None``."""
        if self.path is None or not (self.path / EMBEDDINGS_FILE).exists():
            return None
        return np.load(self.path / EMBEDDINGS_FILE, mmap_mode="r")


def save_index(
    path: str | Path,
    index: faiss.Index,
    meta: IndexMeta,
    embeddings: np.ndarray | None = None,
) -> StoredIndex:
    """Write the index directory atomically and return it as loaded."""
    path = Path(path)
    if index.ntotal != len(meta.doc_ids):
        raise ValueError(f"index holds {index.ntotal} vectors but meta lists {len(meta.doc_ids)} doc ids")
    with atomic_dir(path) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        files = {INDEX_FILE: file_sha256(tmp / INDEX_FILE)}
        if embeddings is not None:
            vectors = normalize(embeddings) if meta.normalized else np.ascontiguousarray(embeddings, dtype=np.float32)
            np.save(tmp / EMBEDDINGS_FILE, vectors)
            files[EMBEDDINGS_FILE] = file_sha256(tmp / EMBEDDINGS_FILE)
        meta.files = files
        meta.created = meta.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        (tmp / META_FILE).write_text(meta.to_json(), encoding="utf-8")
    logger.info("saved index (%d vectors, %s) to %s", index.ntotal, meta.factory, path)
    return StoredIndex(index=index, meta=meta, path=path)


def read_meta(path: str | Path) -> IndexMeta:
    meta_path = Path(path) / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{path}: no index here ({META_FILE} missing); build one with `retrieval index build`")
    try:
        return IndexMeta.from_json(meta_path.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as err:
        raise IndexIntegrityError(f"{meta_path}: unreadable index metadata ({err}); rebuild the index") from err


def load_index(path: str | Path, expect: dict[str, Any] | None = None, verify: bool = True) -> StoredIndex:
    """Load an index directory.

    ``expect`` maps :data:`index.meta.IDENTITY_FIELDS` names to required values;
    any difference raises :class:`IndexMismatchError` listing each one. With
    ``verify`` every recorded checksum is checked first (:class:`IndexIntegrityError`).
    """
    path = Path(path)
    meta = read_meta(path)
    if expect:
        diffs = meta.differences(expect)
        if diffs:
            raise IndexMismatchError(f"{path}: index does not match: " + "; ".join(diffs))
    if verify:
        verify_files(path, meta)
    index = faiss.read_index(str(path / INDEX_FILE))
    if index.ntotal != len(meta.doc_ids):
        raise IndexIntegrityError(f"{path}: index holds {index.ntotal} vectors but meta lists {len(meta.doc_ids)} ids; rebuild it")
    _apply_search_params(index, meta.search_params)
    return StoredIndex(index=index, meta=meta, path=path)


def verify_files(path: Path, meta: IndexMeta) -> None:
    for name, digest in meta.files.items():
        file = path / name
        if not file.exists():
            raise IndexIntegrityError(f"{file}: missing; rebuild the index with `retrieval index build`")
        if file_sha256(file) != digest:
            raise IndexIntegrityError(f"{file}: checksum differs from meta.json (truncated or replaced); rebuild the index")


def _apply_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    if not params:
        return
    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)
