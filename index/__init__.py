"""FAISS indexes saved with the metadata that makes them safe to reuse.

The bottom floor of the project: it knows FAISS and numpy, nothing about text,
models or evaluation. A saved index is a directory holding ``index.faiss``,
optionally ``embeddings.npy``, and ``meta.json`` (see :class:`IndexMeta`).
"""

from __future__ import annotations

from index.build import build_index, normalize
from index.meta import IndexMeta, IndexMismatchError, IndexIntegrityError
from index.store import StoredIndex, load_index, save_index

__all__ = [
    "IndexMeta",
    "IndexMismatchError",
    "IndexIntegrityError",
    "StoredIndex",
    "build_index",
    "load_index",
    "normalize",
    "save_index",
]
