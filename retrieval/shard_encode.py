"""Encode a corpus in shards to memory-mapped ``.npy`` files, resumable shard by shard.

Layout of a shard folder::

    DIR/shards.json                    what the shards hold (texts, model, prompt, backend, bounds)
    DIR/shard-00000-of-00004.npy       rows [start, stop) of the corpus, float32 (normalised by default)
    DIR/.shard-00001-of-00004.npy.partial   a shard being written (deleted and redone on resume)

A shard is written through ``np.lib.format.open_memmap`` under its ``.partial`` name
and renamed into place when complete, so a finished shard file is always whole and is
never recomputed; a crash loses at most the shards in progress.

Several processes each encode and write their own shards: shard ``i`` belongs to rank
``i % world``. Two ways to start them, no home-made scheduler:

* ``torchrun --nproc-per-node G -m cli.shard_worker --data D --model M --out DIR --shards N``
  (:func:`encode_this_rank` in each process)
  (one process per GPU; ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` come from torchrun); then
  ``retrieval index build --shards N --shard-dir DIR`` finds every shard done and only indexes;
* :func:`encode_shards` with ``workers > 1`` on CPU: a ``spawn`` multiprocessing pool, one
  process per rank, each loading the model once and splitting the cores evenly.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from index.atomic import write_text
from retrieval.backends import bulk_context, load_model_with_backend
from retrieval.encode import DEFAULT_BATCH_SIZE, encode, texts_fingerprint

logger = logging.getLogger(__name__)

MANIFEST = "shards.json"
CHUNK = 4096  # texts encoded per call inside a shard: bounds memory, keeps progress visible


def shard_bounds(n: int, n_shards: int) -> list[tuple[int, int]]:
    """``n_shards`` contiguous row ranges covering ``range(n)``, sizes differing by at most one."""
    if n_shards < 1:
        raise ValueError(f"need at least one shard, got {n_shards}")
    edges = np.linspace(0, n, n_shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def shard_path(folder: Path, i: int, n_shards: int) -> Path:
    return folder / f"shard-{i:05d}-of-{n_shards:05d}.npy"


def is_complete(path: Path, rows: int, dim: int | None = None) -> bool:
    if not path.exists():
        return False
    try:
        shape = np.load(path, mmap_mode="r").shape
    except (ValueError, OSError):
        return False
    return shape[0] == rows and (dim is None or shape[1] == dim)


def _manifest(texts: list[str], model: str, n_shards: int, prompt: str | None, backend: str, normalize: bool,
              fingerprint: str | None = None) -> dict:
    return {"texts": texts_fingerprint(texts, prompt), "documents": len(texts), "model": model,
            "model_fingerprint": fingerprint, "prompt": prompt, "backend": backend, "normalize": normalize,
            "bounds": shard_bounds(len(texts), n_shards)}


def _check_manifest(folder: Path, manifest: dict) -> None:
    path = folder / MANIFEST
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        old["bounds"] = [tuple(b) for b in old.get("bounds", [])]
        diffs = [k for k in manifest if old.get(k) != manifest[k]]
        if diffs:
            raise ValueError(f"{folder}: holds shards of another encoding (differs in {', '.join(diffs)}); "
                             "use another shard folder or delete it")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(manifest, indent=1))


def encode_shard(model, texts: list[str], path: Path, prompt: str | None, batch_size: int,
                 normalize: bool, progress: bool = False) -> Path:
    """Encode ``texts`` into ``path`` through a ``.partial`` memory map, renamed when whole."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    out = None
    for lo in range(0, max(len(texts), 1), CHUNK):
        with bulk_context(model):  # as the single-process build encodes a corpus
            vectors = encode(model, texts[lo : lo + CHUNK], prompt, batch_size, progress)
        if normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if out is None:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(texts), vectors.shape[1]))
        out[lo : lo + len(vectors)] = vectors
    out.flush()
    del out
    os.replace(partial, path)
    return path


def _set_threads(world: int) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))


def run_rank(rank: int, world: int, job: dict) -> list[int]:
    """Encode the unfinished shards owned by ``rank``; returns the shard numbers it wrote."""
    folder, bounds = Path(job["folder"]), job["bounds"]
    mine = [i for i in range(len(bounds)) if i % world == rank
            and not is_complete(shard_path(folder, i, len(bounds)), bounds[i][1] - bounds[i][0])]
    if not mine:
        return []
    if world > 1:
        _set_threads(world)
    model = job.get("model_object") or load_model_with_backend(job["model"], job["backend"], job.get("device"),
                                                               calibration_texts=job.get("calibration"))
    for i in mine:
        lo, hi = bounds[i]
        encode_shard(model, job["texts"][lo:hi], shard_path(folder, i, len(bounds)), job["prompt"],
                     job["batch_size"], job["normalize"], job.get("progress", False))
        logger.info("rank %d wrote shard %d (%d documents)", rank, i, hi - lo)
    return mine


def _spawned(args: tuple[int, int, dict]) -> list[int]:
    return run_rank(*args)


def encode_shards(
    model: str,
    texts: list[str],
    folder: str | Path,
    n_shards: int,
    prompt: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    backend: str = "torch",
    normalize: bool = True,
    device: str | None = None,
    model_object=None,
    progress: bool = False,
    fingerprint: str | None = None,
    calibration: list[str] | None = None,
) -> list[Path]:
    """Encode ``texts`` with ``model`` into ``n_shards`` shard files in ``folder``; returns their paths.

    Shards already complete are left untouched (resume). ``workers > 1`` spawns that many
    processes; ``model_object`` (an already loaded model) is used only with one worker.
    ``fingerprint`` (``retrieval.models.model_fingerprint``) is recorded so that shards of
    other weights saved under the same model name are refused rather than reused.
    ``calibration``: the texts a calibrated backend (``openvino-int8``) was quantised on,
    so that spawned workers load the same quantised model.
    """
    folder = Path(folder)
    manifest = _manifest(texts, model, n_shards, prompt, backend, normalize, fingerprint)
    _check_manifest(folder, manifest)
    job = {"folder": str(folder), "bounds": manifest["bounds"], "texts": texts, "model": model, "backend": backend,
           "prompt": prompt, "batch_size": batch_size, "normalize": normalize, "device": device, "progress": progress,
           "calibration": calibration}
    if workers <= 1:
        run_rank(0, 1, {**job, "model_object": model_object})
    else:
        # An executor, not multiprocessing.Pool: a worker that dies raises BrokenProcessPool here
        # instead of being replaced forever.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            list(pool.map(_spawned, [(r, workers, job) for r in range(workers)]))
    paths = [shard_path(folder, i, n_shards) for i in range(n_shards)]
    missing = [p.name for p, (lo, hi) in zip(paths, manifest["bounds"]) if not is_complete(p, hi - lo)]
    if missing:
        raise RuntimeError(f"{folder}: shards not written: {', '.join(missing)}")
    return paths


def load_shards(paths: list[Path]) -> list[np.ndarray]:
    """The shard arrays, memory-mapped (nothing is read until used)."""
    return [np.load(p, mmap_mode="r") for p in paths]


def build_from_shards(paths: list[Path], factory: str, blocks_dir: Path):
    """One FAISS index over the shard files: IVF indexes per shard merged (:mod:`index.shards`),
    other types (Flat, HNSW: no per-shard merge) built over all vectors at once."""
    import faiss

    from index import build_index
    from index.shards import build_sharded

    shards = load_shards(paths)
    probe = faiss.index_factory(shards[0].shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if faiss.try_extract_index_ivf(probe) is not None:
        return build_sharded(factory, shards, blocks_dir)
    if probe.is_trained:  # Flat, HNSW: nothing to train, so add shard by shard without concatenating
        for shard in shards:
            for lo in range(0, len(shard), CHUNK):
                probe.add(np.ascontiguousarray(shard[lo : lo + CHUNK], dtype=np.float32))
        return probe
    return build_index(np.concatenate(shards), factory, normalized=False)


def build_sharded_index(out: str | Path, model, model_name: str, dataset, spec, n_shards: int, shard_dir: str | Path, *,
                        workers: int = 1, backend: str = "torch", device: str | None = None,
                        calibration: list[str] | None = None):
    """Encode ``dataset``'s corpus in ``n_shards`` resumable shards under ``shard_dir``, then index and save to ``out``.

    Finished shards (e.g. written by ``torchrun -m cli.shard_worker``) are reused; the saved
    index carries the same metadata as one built in one piece, so it is checked the same way.
    """
    from index import IndexMeta, save_index
    from index.store import stores_vectors
    from retrieval.encode import doc_texts
    from retrieval.models import model_fingerprint
    from retrieval.retriever import expectation

    shard_dir = Path(shard_dir)
    ids = list(dataset.corpus)
    paths = encode_shards(model_name, doc_texts(dataset.corpus, ids), shard_dir, n_shards, spec.document_prompt,
                          spec.batch_size, workers, backend, device=device,
                          model_object=model if workers == 1 else None, progress=True,
                          fingerprint=model_fingerprint(model), calibration=calibration)
    index = build_from_shards(paths, spec.factory, shard_dir / "blocks")
    meta = IndexMeta(model=model_name, doc_ids=ids, corpus_source=dataset.source, backend=backend,
                     **expectation(model, dataset.corpus, spec))
    keep = spec.save_embeddings and not stores_vectors(index)  # a flat index holds its vectors already
    return save_index(out, index, meta, load_shards(paths) if keep else None)


def encode_this_rank(data: str, model_name: str, out: str | Path, n_shards: int, document_prompt: str | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE, backend: str = "torch") -> list[int]:
    """This process's shards of ``data``'s corpus, as one ``torchrun`` rank (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``).

    Rank 0 checks (or writes) the folder's manifest; each rank encodes shard ``i`` where
    ``i % WORLD_SIZE == RANK``, on GPU ``LOCAL_RANK`` when there is one. Returns the shards done.
    """
    import torch

    from retrieval.backend_exports import calibration_sample
    from retrieval.backends import NEEDS_CALIBRATION
    from retrieval.encode import doc_texts
    from retrieval.models import model_fingerprint
    from retrieval.sources import resolve

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = f"cuda:{local}" if torch.cuda.is_available() else None
    texts = doc_texts(resolve(data).corpus)
    calibration = calibration_sample(texts) if backend in NEEDS_CALIBRATION else None
    model = load_model_with_backend(model_name, backend, device, calibration_texts=calibration)
    manifest = _manifest(texts, model_name, n_shards, document_prompt, backend, True, model_fingerprint(model))
    if rank == 0:
        _check_manifest(Path(out), manifest)
    job = {"folder": str(out), "bounds": manifest["bounds"], "texts": texts, "model": model_name, "backend": backend,
           "prompt": document_prompt, "batch_size": batch_size, "normalize": True, "device": device,
           "model_object": model}
    return run_rank(rank, world, job)
