"""Hybrid retrieval: fuse a lexical and a dense run with ranx (reciprocal rank fusion by default).

RRF (Cormack et al., 2009) needs no score calibration between BM25 and cosine
scores, which is why it is the default; any ranx fusion method can be named.
"""

from __future__ import annotations

import warnings

from ranx import Run, fuse

# ranx's RRF kernel warns about an index cast on its first call (numba, from its own frame): not the user's concern
warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")


def hybrid(runs: list[Run], method: str = "rrf", name: str = "hybrid", norm: str | None = None) -> Run:
    """Fuse ``runs`` with ranx ``fuse`` (``rrf``: ranks only; others min-max normalise scores first)."""
    from retrieval.evaluate import RANX_LOCK

    with RANX_LOCK:  # ranx's numba kernels may not run in two threads at once
        fused = fuse(runs, norm=norm or ("min-max" if method != "rrf" else None), method=method)
    fused.name = name
    return fused


def break_ties(run: Run, by: Run | None = None, name: str | None = None) -> Run:
    """A copy of ``run`` whose scores strictly decrease, as float32, in the order (score, ``by``'s score, document id).

    Evaluators order equal scores differently (ranx one way, trec_eval by document id in
    reverse), so a run with ties (RRF gives exact ties) scores differently in each. And
    some read scores in single precision (pytrec_eval does: scores 1e-8 apart tie there),
    so each score is stored as a float32 value, and one that is not below its predecessor
    *in float32* becomes the next float32 below it (``numpy.nextafter``). The order is
    then the same for every reader and no distinct scores change their order; dense scores
    (float32 from FAISS) keep their values unless tied. ``by`` is the dense run a hybrid came
    from: its score breaks a tie first, the document id last.
    """
    import math

    import numpy as np

    data, secondary = run.to_dict(), (by.to_dict() if by is not None else {})
    out = {}
    below = np.float32(-np.inf)
    for qid, docs in data.items():
        second = secondary.get(qid, {})
        order = sorted(docs, key=lambda d: (-docs[d], -second.get(d, -math.inf), d))
        scores, previous = {}, None
        for doc in order:
            score = np.float32(docs[doc])
            if previous is not None and score >= previous:
                score = np.nextafter(previous, below)
            previous = score
            scores[doc] = float(score)
        out[qid] = scores
    fixed = Run.from_dict(out)
    fixed.name = name or run.name
    return fixed
