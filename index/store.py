"""Save and load an index directory, refusing a wrong pairing or a damaged file.

Layout of a saved index::

    DIR/index.faiss      the FAISS index (faiss.write_index)
    DIR/embeddings.npy   the vectors as indexed (optional; lets later stages reuse them; an exact
                         flat index holds them already, see StoredIndex.vectors)
    DIR/meta.json        IndexMeta, with sha256 checksums of the two files above
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.atomic import atomic_dir, file_sha256, recover
from index.build import normalize, truncate
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
    _ids: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` document ids and scores for each query vector (best first).

        Query vectors are normalised like the documents were (and, for a Matryoshka-truncated
        index, cut to its first ``dim`` coordinates first). Slots FAISS leaves empty (``-1``,
        fewer than ``k`` hits) are dropped from the id lists.
        """
        if self.meta.truncate_dim and np.ndim(queries) == 2 and np.shape(queries)[1] > self.meta.dim:
            q = truncate(queries, self.meta.dim)  # full-width query vectors, cut like the documents were
        else:
            q = normalize(queries) if self.meta.normalized else np.ascontiguousarray(queries, dtype=np.float32)
        if q.shape[1] != self.meta.dim:
            raise IndexMismatchError(f"query vectors have dimension {q.shape[1]}, the index has {self.meta.dim}")
        k = min(k, len(self))
        scores, idx = self.index.search(q, k)
        ids = self._id_array()
        if (idx >= 0).all():
            return ids[idx].tolist(), scores
        return [ids[row[row >= 0]].tolist() for row in idx], scores

    def _id_array(self) -> np.ndarray:
        """``meta.doc_ids`` as a numpy object array, built once: row numbers map to ids in one take."""
        if self._ids is None or len(self._ids) != len(self.meta.doc_ids):
            self._ids = np.asarray(self.meta.doc_ids, dtype=object)
        return self._ids

    def embeddings(self) -> np.ndarray | None:
        """The indexed vectors if they were saved (memory-mapped), else ``None``.

        Only a file that ``meta.json`` records is used (an unrecorded one was not
        verified); its shape must be ``(len(doc_ids), dim)``. Never unpickles.
        """
        if self.path is None or not (self.path / EMBEDDINGS_FILE).exists():
            return None
        file = self.path / EMBEDDINGS_FILE
        if EMBEDDINGS_FILE not in self.meta.files:
            logger.warning("%s: not recorded in meta.json; ignoring it", file)
            return None
        try:
            vectors = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise IndexIntegrityError(f"{file}: unreadable ({_first_line(err)}); {rebuild_advice(self.path, self.meta)}") from None
        if vectors.shape != (len(self.meta.doc_ids), self.meta.dim):
            raise IndexIntegrityError(
                f"{file}: shape {vectors.shape}, meta.json says ({len(self.meta.doc_ids)}, {self.meta.dim}); "
                f"{rebuild_advice(self.path, self.meta)}"
            )
        return vectors

    def vectors(self) -> np.ndarray | None:
        """The indexed vectors: ``embeddings.npy`` when saved, else an exact flat index's own storage.

        ``IndexFlat`` keeps every vector as float32, so for it ``embeddings.npy`` would be a
        second copy of ``index.faiss``; this returns a read-only view of the index's buffer
        (no copy). ``None`` for a compressed or graph index saved without embeddings.
        """
        saved = self.embeddings()
        if saved is not None:
            return saved
        flat = flat_vectors(self.index)
        if flat is not None:
            flat.flags.writeable = False
        return flat


def flat_vectors(index: faiss.Index) -> np.ndarray | None:
    """A zero-copy ``(ntotal, d)`` view of an exact ``IndexFlat``'s vectors, ``None`` for other index types.

    The view's memory belongs to the index: the ctypes buffer under it holds a reference to
    ``index`` (the Python object that owns the C++ one), so the index outlives every slice.
    """
    import ctypes

    try:
        flat = faiss.downcast_index(index)
    except RuntimeError:
        return None
    if not isinstance(flat, faiss.IndexFlat) or flat.ntotal == 0:
        return None
    buffer = (ctypes.c_float * (flat.ntotal * flat.d)).from_address(int(flat.get_xb()))
    buffer.owner = index
    return np.frombuffer(buffer, dtype=np.float32).reshape(flat.ntotal, flat.d)


def stores_vectors(index: faiss.Index) -> bool:
    """Whether the index itself holds its vectors exactly (so ``embeddings.npy`` would duplicate it)."""
    return flat_vectors(index) is not None


def save_index(
    path: str | Path,
    index: faiss.Index,
    meta: IndexMeta,
    embeddings: np.ndarray | Sequence[np.ndarray] | None = None,
) -> StoredIndex:
    """Write the index directory atomically and return it as loaded.

    ``embeddings`` may be one array or a sequence of row blocks (e.g. memory-mapped shards);
    either way they are written chunk by chunk into ``embeddings.npy``, so saving never
    holds a second full copy of the vectors in memory.
    """
    path = Path(path)
    if index.ntotal != len(meta.doc_ids):
        raise ValueError(f"index holds {index.ntotal} vectors but meta lists {len(meta.doc_ids)} doc ids")
    with atomic_dir(path) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        files = {INDEX_FILE: file_sha256(tmp / INDEX_FILE)}
        if embeddings is not None:
            _write_embeddings(tmp / EMBEDDINGS_FILE, embeddings, meta.normalized, index.ntotal)
            files[EMBEDDINGS_FILE] = file_sha256(tmp / EMBEDDINGS_FILE)
        meta.files = files
        meta.created = meta.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        (tmp / META_FILE).write_text(meta.to_json(), encoding="utf-8")
    logger.info("saved index (%d vectors, %s) to %s", index.ntotal, meta.factory, path)
    return StoredIndex(index=index, meta=meta, path=path)


WRITE_CHUNK = 65536


def _write_embeddings(path: Path, embeddings: np.ndarray | Sequence[np.ndarray], normalized: bool, rows: int) -> None:
    blocks = [embeddings] if isinstance(embeddings, np.ndarray) else list(embeddings)
    if not blocks or any(b.ndim != 2 or b.shape[1] != blocks[0].shape[1] for b in blocks):
        raise ValueError(f"embeddings must be 2-D blocks of one width, got {[b.shape for b in blocks]}")
    total = sum(len(b) for b in blocks)
    if total != rows:
        raise ValueError(f"embeddings hold {total} rows but the index holds {rows} vectors")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(total, blocks[0].shape[1]))
    row = 0
    for block in blocks:
        for lo in range(0, len(block), WRITE_CHUNK):
            part = block[lo : lo + WRITE_CHUNK]
            out[row : row + len(part)] = normalize(part) if normalized else part
            row += len(part)
    out.flush()
    del out


def rebuild_advice(path: Path | None, meta: IndexMeta | None = None) -> str:
    """What to run to replace a damaged index directory (the message ends with it)."""
    data = (meta.corpus_source if meta is not None and meta.corpus_source else None) or "DATA"
    model = f" --model {meta.model}" if meta is not None and meta.model else ""
    return f"rebuild the index: retrieval index build --data {data}{model} --out {path} --overwrite (or delete {path})"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:200]


def read_meta(path: str | Path) -> IndexMeta:
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.exists() and recover(path):
        logger.warning("%s: restored the previous index left by a writer that was killed mid-swap", path)
    if not meta_path.exists():
        raise FileNotFoundError(f"{path}: no index here ({META_FILE} missing); build one with `retrieval index build`")
    try:
        meta = IndexMeta.from_json(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as err:
        raise IndexIntegrityError(f"{meta_path}: unreadable index metadata ({_first_line(err)}); {rebuild_advice(path)}") from None
    problem = _meta_problem(meta)
    if problem:
        raise IndexIntegrityError(f"{meta_path}: {problem}; {rebuild_advice(path, meta)}")
    return meta


def _meta_problem(meta: IndexMeta) -> str | None:
    """A reason ``meta`` cannot describe a real index (wrong types, no checksums), else None."""
    if not isinstance(meta.doc_ids, list) or not all(isinstance(d, str) for d in meta.doc_ids):
        return "doc_ids must be a list of strings"
    if isinstance(meta.dim, bool) or not isinstance(meta.dim, int) or meta.dim <= 0:
        return f"dim must be a positive integer, got {meta.dim!r}"
    if not isinstance(meta.files, dict) or INDEX_FILE not in meta.files:
        return f"records no checksum of {INDEX_FILE}, so the files cannot be verified"
    if any(not isinstance(n, str) or Path(n).name != n or n in (".", "..") for n in meta.files):
        return "checksums must name files inside the index directory"
    if not isinstance(meta.search_params, dict):
        return "search_params must be an object"
    if meta.truncate_dim is not None and (meta.truncate_dim != meta.dim or not meta.normalized):
        return f"truncate_dim {meta.truncate_dim!r} must equal dim {meta.dim} of a normalised index"
    return None


def load_index(path: str | Path, expect: dict[str, Any] | None = None, verify: bool = True) -> StoredIndex:
    """Load an index directory.

    ``expect`` maps :data:`index.meta.IDENTITY_FIELDS` names to required values;
    any difference raises :class:`IndexMismatchError` listing each one. With
    ``verify`` every recorded checksum is checked first (:class:`IndexIntegrityError`).
    A FAISS file that cannot be read is an :class:`IndexIntegrityError` too (one
    line, with the rebuild command), never FAISS's C++ exception text.
    """
    path = Path(path)
    meta = read_meta(path)
    if expect:
        diffs = meta.differences(expect)
        if diffs:
            raise IndexMismatchError(f"{path}: index does not match: " + "; ".join(diffs))
    if verify:
        verify_files(path, meta)
    try:
        index = faiss.read_index(str(path / INDEX_FILE))
    except RuntimeError as err:
        raise IndexIntegrityError(f"{path / INDEX_FILE}: unreadable FAISS index ({_first_line(err)}); {rebuild_advice(path, meta)}") from None
    if index.ntotal != len(meta.doc_ids) or index.d != meta.dim:
        raise IndexIntegrityError(
            f"{path}: index holds {index.ntotal} vectors of dimension {index.d} but meta lists {len(meta.doc_ids)} ids "
            f"of dimension {meta.dim}; {rebuild_advice(path, meta)}"
        )
    _apply_search_params(index, meta.search_params)
    return StoredIndex(index=index, meta=meta, path=path)


def verify_files(path: Path, meta: IndexMeta) -> None:
    for name, digest in meta.files.items():
        file = path / name
        if not file.exists():
            raise IndexIntegrityError(f"{file}: missing; {rebuild_advice(path, meta)}")
        if file_sha256(file) != digest:
            raise IndexIntegrityError(
                f"{file}: checksum differs from meta.json (truncated or replaced); {rebuild_advice(path, meta)}"
            )


def _apply_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    if not params:
        return
    space = faiss.ParameterSpace()
    for name, value in params.items():
        space.set_index_parameter(index, name, value)
