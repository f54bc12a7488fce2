"""Build a FAISS inner-product index from embeddings through ``index_factory``.

Every index here is inner product over (by default) L2-normalised vectors, so a
score is a cosine similarity whatever the factory string: ``Flat``, ``HNSW32``,
``IVF1024,Flat``, ``IVF4096,PQ32``, ``OPQ32,IVF4096,PQ32`` all go through the
same call. Indexes that need training are trained on a random sample, as FAISS
recommends (a few dozen vectors per centroid is plenty).
"""

from __future__ import annotations

import logging

import faiss
import numpy as np

logger = logging.getLogger(__name__)

# FAISS warns below ~39 training points per centroid; 256 per centroid is its upper advice.
TRAIN_POINTS_PER_CENTROID = 256


def normalize(x: np.ndarray) -> np.ndarray:
    """Return a float32, C-contiguous, L2-normalised copy (zero rows stay zero)."""
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {x.shape}")
    faiss.normalize_L2(x)
    return x


def truncate(x: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` coordinates of every row, L2-renormalised (float32 copy): a Matryoshka prefix.

    A prefix of a unit vector is no longer unit, and an inner-product index scores cosines only
    over unit vectors, hence the renormalisation (zero rows stay zero).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {x.shape}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= x.shape[1]:
        raise ValueError(f"cannot truncate embeddings of dimension {x.shape[1]} to {dim!r}")
    return normalize(x[:, : int(dim)])


def _as_float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def build_index(
    embeddings: np.ndarray,
    factory: str = "Flat",
    *,
    normalized: bool = True,
    train_size: int | None = None,
    seed: int = 0,
) -> faiss.Index:
    """Build and fill an inner-product index.

    ``normalized=True`` L2-normalises a copy of ``embeddings`` first (cosine scores).
    ``train_size`` caps the sample used to train IVF/PQ indexes; by default it is
    ``TRAIN_POINTS_PER_CENTROID`` times the number of centroids, or everything.
    """
    x = normalize(embeddings) if normalized else _as_float32(embeddings)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"cannot index an empty or malformed embedding matrix of shape {x.shape}")
    try:
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:  # FAISS reports a bad string as a C++ exception text
        raise ValueError(f"FAISS cannot build index type {factory!r}: {str(err).splitlines()[-1]}") from err
    if not index.is_trained:
        sample = _training_sample(x, index, train_size, seed)
        logger.info("training %s on %d vectors", factory, len(sample))
        try:
            index.train(sample)
        except RuntimeError as err:
            reason = str(err).splitlines()[-1].split("failed: ")[-1]
            raise ValueError(f"FAISS cannot train {factory!r} on {len(sample)} vectors: {reason}") from err
    index.add(x)
    return index


def _training_sample(x: np.ndarray, index: faiss.Index, train_size: int | None, seed: int) -> np.ndarray:
    if train_size is None:
        ivf = faiss.try_extract_index_ivf(index)
        train_size = TRAIN_POINTS_PER_CENTROID * ivf.nlist if ivf is not None else len(x)
    if train_size >= len(x):
        return x
    rng = np.random.default_rng(seed)
    return x[np.sort(rng.choice(len(x), size=train_size, replace=False))]
