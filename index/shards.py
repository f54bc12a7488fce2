"""Indexes larger than memory or built in pieces: per-shard IVF indexes, merged or served together.

This is FAISS's own recipe (``faiss/contrib/ondisk.py``, the "Indexing 1G vectors"
wiki page), unchanged:

1. train one empty IVF index on a sample drawn across all shards (:func:`train_empty`);
2. copy it per shard and ``add_with_ids`` that shard's vectors with their global row
   numbers as ids (:func:`add_shard`), each written to its own ``block_i.index``;
3. either merge the blocks' inverted lists into one on-disk ``.ivfdata`` file with
   ``faiss.contrib.ondisk.merge_ondisk`` (:func:`merge_on_disk`, for corpora larger than
   memory), or into one in-memory index with ``merge_from`` (:func:`merge_in_memory`, to
   save like any other index), or serve the shard indexes side by side with
   ``faiss.IndexShards`` (:func:`serve_shards`).

Because every shard shares the trained quantizer and ids are global row numbers, the
merged index holds exactly what one index built over all vectors would.

GPU: when ``faiss.get_num_gpus() > 0`` (faiss-gpu installed), training and adding run on
all GPUs through ``index_cpu_to_all_gpus`` and the result is copied back to CPU for
saving. That path is small and has not been exercised on a GPU machine here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from index.build import TRAIN_POINTS_PER_CENTROID

logger = logging.getLogger(__name__)

IVFDATA_FILE = "lists.ivfdata"


def on_gpu(index: faiss.Index) -> faiss.Index:
    """``index`` on every GPU if faiss-gpu sees one, else ``index`` itself."""
    if faiss.get_num_gpus() > 0:  # pragma: no cover - no GPU in CI
        return faiss.index_cpu_to_all_gpus(index)
    return index


def to_cpu(index: faiss.Index) -> faiss.Index:
    if faiss.get_num_gpus() > 0 and not isinstance(index, faiss.IndexShards):  # pragma: no cover
        try:
            return faiss.index_gpu_to_cpu(index)
        except (RuntimeError, AttributeError):
            return index
    return index


def sample_rows(shards: Sequence[np.ndarray], size: int, seed: int = 0) -> np.ndarray:
    """``size`` rows drawn uniformly across all shards (memory-mapped arrays are read row by row)."""
    total = sum(len(s) for s in shards)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(total, size=min(size, total), replace=False))
    offsets = np.cumsum([0] + [len(s) for s in shards])
    parts = []
    for i, shard in enumerate(shards):
        local = rows[(rows >= offsets[i]) & (rows < offsets[i + 1])] - offsets[i]
        parts.append(np.asarray(shard[local], dtype=np.float32))
    return np.ascontiguousarray(np.concatenate(parts))


def train_empty(factory: str, shards: Sequence[np.ndarray], train_size: int | None = None, seed: int = 0) -> faiss.Index:
    """An empty inner-product index of type ``factory``, trained on a sample of all shards."""
    dim = shards[0].shape[1]
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if faiss.try_extract_index_ivf(index) is None:
        raise ValueError(f"sharded builds need an IVF index (IVF...,Flat / IVF...,PQ...), not {factory!r}")
    if train_size is None:
        train_size = TRAIN_POINTS_PER_CENTROID * faiss.extract_index_ivf(index).nlist
    sample = sample_rows(shards, train_size, seed)
    logger.info("training %s on %d vectors", factory, len(sample))
    trained = on_gpu(index)
    trained.train(sample)
    return to_cpu(trained)


def add_shard(trained: faiss.Index, vectors: np.ndarray, start: int, chunk: int = 65536) -> faiss.Index:
    """A copy of ``trained`` holding ``vectors`` under ids ``start, start+1, ...`` (added in chunks)."""
    index = faiss.clone_index(trained)
    target = on_gpu(index)
    for lo in range(0, len(vectors), chunk):
        block = np.ascontiguousarray(vectors[lo : lo + chunk], dtype=np.float32)
        target.add_with_ids(block, np.arange(start + lo, start + lo + len(block), dtype=np.int64))
    return to_cpu(target)


def write_blocks(trained: faiss.Index, shards: Sequence[np.ndarray], out_dir: str | Path) -> list[Path]:
    """Step 2 for every shard: ``out_dir/block_{i}.index`` with global ids."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for i, shard in enumerate(shards):
        path = out_dir / f"block_{i:05d}.index"
        faiss.write_index(add_shard(trained, shard, start), str(path))
        paths.append(path)
        start += len(shard)
    return paths


def merge_on_disk(trained: faiss.Index, blocks: Sequence[str | Path], out_dir: str | Path, name: str = "index.faiss") -> Path:
    """Merge block indexes into ``out_dir/name`` whose lists live in ``out_dir/lists.ivfdata``.

    Read it back with :func:`read_on_disk` (the lists file is found beside the index, so the
    folder can be moved).
    """
    from faiss.contrib.ondisk import merge_ondisk

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = faiss.clone_index(trained)
    merge_ondisk(index, [str(b) for b in blocks], str(out_dir / IVFDATA_FILE))
    faiss.write_index(index, str(out_dir / name))
    return out_dir / name


def read_on_disk(path: str | Path) -> faiss.Index:
    """Open an index written by :func:`merge_on_disk`; its inverted lists stay memory-mapped on disk."""
    return faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)


def merge_in_memory(blocks: Sequence[str | Path | faiss.Index]) -> faiss.Index:
    """One ordinary IVF index holding every block (``merge_from``, ids kept as they are)."""
    indexes = [faiss.read_index(str(b)) if not isinstance(b, faiss.Index) else b for b in blocks]
    merged = indexes[0]
    ivf = faiss.extract_index_ivf(merged)
    for other in indexes[1:]:
        ivf.merge_from(faiss.extract_index_ivf(other), 0)
    merged.ntotal = ivf.ntotal
    return merged


def serve_shards(indexes: Sequence[faiss.Index], successive_ids: bool = False) -> faiss.IndexShards:
    """Search several shard indexes as one (``faiss.IndexShards``, queried in parallel threads).

    With ids already global (blocks from :func:`add_shard`) keep ``successive_ids=False``;
    for shards indexed from 0 each, ``True`` offsets ids by the sizes of the shards before.
    """
    shards = faiss.IndexShards(indexes[0].d, True, successive_ids)
    for index in indexes:
        shards.add_shard(index)  # faiss's wrapper keeps a Python reference to each shard
    return shards


def build_sharded(
    factory: str,
    shards: Sequence[np.ndarray],
    work_dir: str | Path,
    train_size: int | None = None,
    seed: int = 0,
) -> faiss.Index:
    """Steps 1-3 in memory: train on a sample, write one block per shard, merge them."""
    trained = train_empty(factory, shards, train_size, seed)
    blocks = write_blocks(trained, shards, work_dir)
    return merge_in_memory(blocks)
