"""Hybrid retrieval: fuse a lexical and a dense run with ranx (reciprocal rank fusion by default).

RRF (Cormack et al., 2009) needs no score calibration between BM25 and cosine
scores, which is why it is the default; any ranx fusion method can be named.
"""

from __future__ import annotations

from ranx import Run, fuse


def hybrid(runs: list[Run], method: str = "rrf", name: str = "hybrid", norm: str | None = None) -> Run:
    """Fuse ``runs`` with ranx ``fuse`` (``rrf``: ranks only; others min-max normalise scores first)."""
    fused = fuse(runs, norm=norm or ("min-max" if method != "rrf" else None), method=method)
    fused.name = name
    return fused
