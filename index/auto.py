"""Pick a FAISS ``index_factory`` string from the corpus size and a memory budget.

The rules follow FAISS's own guidelines ("Guidelines to choose an index" in the
FAISS wiki), simplified on purpose to three regimes:

* small corpora (``n <= EXACT_MAX``) whose vectors fit the budget: ``Flat``.
  Exact search over 100k x 384 floats takes a few ms per query; nothing to tune.
* larger corpora whose float32 vectors fit the budget: ``IVF{nlist},Flat`` with
  ``nlist ~ 4 sqrt(n)`` (a power of two), tuned afterwards to a target recall
  (:mod:`index.autotune`). HNSW is not chosen automatically: it costs ~2x the
  memory of the links, builds an order of magnitude slower on a few cores, and
  IVF's nprobe is a smoother knob to tune; ask for ``HNSW32`` explicitly.
* corpora whose vectors do not fit: ``IVF{nlist},PQ{m}`` with the largest
  ``m`` (bytes per vector, dividing ``dim``) that fits; ``OPQ{m}`` is prepended
  when the code is 16x or more smaller than float32, where the rotation pays.

Every IVF choice keeps at least ``MIN_POINTS_PER_CENTROID`` vectors per list,
FAISS's own floor for a meaningful k-means.
"""

from __future__ import annotations

import math
import re

EXACT_MAX = 100_000
MIN_POINTS_PER_CENTROID = 39
PQ_BYTES = (96, 64, 48, 32, 24, 16, 12, 8, 4)
ID_BYTES = 8  # IVF stores one int64 id per vector

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str | int | float | None) -> int | None:
    """``"2GB"``, ``"512MiB"``, ``"1.5g"`` or a number of bytes -> bytes (``None`` stays ``None``)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read memory size {text!r}: use e.g. 2GB, 512MiB or a number of bytes")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def choose_nlist(n: int) -> int:
    """A power of two near ``4 sqrt(n)``, capped so each list gets enough training points."""
    target = 4 * math.sqrt(max(n, 1))
    nlist = 2 ** max(0, round(math.log2(target)))
    while nlist > 1 and n / nlist < MIN_POINTS_PER_CENTROID:
        nlist //= 2
    return nlist


def estimate_bytes(factory: str, n: int, dim: int) -> int:
    """Rough resident size of a filled index: codes + ids + centroids (+ HNSW links)."""
    nlist = int(m.group(1)) if (m := re.search(r"IVF(\d+)", factory)) else 0
    pq = re.search(r",PQ(\d+)(?:x(\d+))?", factory)
    if pq:
        bits = int(pq.group(2) or 8)
        code = int(pq.group(1)) * bits // 8
        extra = 2 ** bits * dim * 4 + (dim * dim * 4 if factory.startswith("OPQ") else 0)
    else:
        code, extra = dim * 4, 0
    if factory.startswith("HNSW"):
        links = int(re.match(r"HNSW(\d+)", factory).group(1))
        return n * (code + links * 2 * 4 + 8)
    return n * (code + (ID_BYTES if nlist else 0)) + nlist * dim * 4 + extra


def choose_factory(n: int, dim: int, memory_budget: int | str | None = None) -> str:
    """The factory string for ``n`` vectors of dimension ``dim`` within ``memory_budget`` bytes.

    Raises ``ValueError`` when even the smallest PQ code does not fit.
    """
    if n <= 0 or dim <= 0:
        raise ValueError(f"cannot choose an index for {n} vectors of dimension {dim}")
    budget = parse_bytes(memory_budget)
    fits = (lambda f: budget is None or estimate_bytes(f, n, dim) <= budget)
    if n <= EXACT_MAX and fits("Flat"):
        return "Flat"
    nlist = choose_nlist(n)
    if nlist < 2:
        if fits("Flat"):
            return "Flat"
        raise ValueError(f"{n} vectors are too few to train a compressed index; raise the memory budget")
    ivf_flat = f"IVF{nlist},Flat"
    if fits(ivf_flat):
        return ivf_flat
    if n < MIN_POINTS_PER_CENTROID * 256:  # each PQ sub-quantizer has 256 centroids
        raise ValueError(f"{n} vectors are too few to train a PQ code; raise the memory budget to {estimate_bytes(ivf_flat, n, dim)} bytes")
    for m in PQ_BYTES:
        if dim % m or m > dim:
            continue
        factory = f"IVF{nlist},PQ{m}"
        if dim * 4 // m >= 16:
            factory = f"OPQ{m},{factory}"
        if fits(factory):
            return factory
    raise ValueError(
        f"no index of {n} x {dim} vectors fits in {budget} bytes (smallest estimate "
        f"{estimate_bytes(f'IVF{nlist},PQ4', n, dim)} bytes); raise --memory-budget"
    )
