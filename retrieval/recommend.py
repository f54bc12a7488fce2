"""Which system to deploy, decided on dev evidence: tuned, tuned + BM25, base, or base + BM25.

A run must never hand a user a model that is worse than the one they started from without
saying so. The decision uses the dev queries held out *by document* (``finetune.dev_split``):
``unseen`` (no relevant document was a training positive: next month's documents) and
``seen`` (the documents the model was trained on), each with ranx's paired Student t-test.

The rule, in order:

1. A system with the tuned model is **disqualified** when it is below its base counterpart
   (``tuned`` vs ``base``, ``tuned+bm25`` vs ``base+bm25``) on dev-unseen by any amount,
   significantly below it on dev-seen, or, with a forgetting guard, significantly below the
   base model on the general dataset.
2. Among the rest, the candidates are those within ``tie`` nDCG@10 of the best on the
   primary group (dev-unseen; dev-seen or all of dev when a group is missing).
3. Ties go to the simpler system (``base`` < ``tuned`` < ``base+bm25`` < ``tuned+bm25``:
   a model swap is simpler to deploy than a second, lexical index) unless another candidate
   is significantly better on dev-seen.

Inputs are per-query nDCG@10 scores, so the rule is testable on constructed numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SIMPLEST_FIRST = ("base", "tuned", "base+bm25", "tuned+bm25")
COUNTERPART = {"tuned": "base", "tuned+bm25": "base+bm25"}
DESCRIPTION = {
    "base": "the base model, unchanged",
    "tuned": "the tuned model",
    "base+bm25": "the base model fused with BM25 (reciprocal rank fusion)",
    "tuned+bm25": "the tuned model fused with BM25 (reciprocal rank fusion)",
}
PerQuery = dict[str, dict[str, float]]  # {system: {qid: score}}


@dataclass
class Recommendation:
    system: str
    reason: str
    primary: str  # the dev group the choice was made on
    warnings: list[str] = field(default_factory=list)
    disqualified: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)  # {group: {"n", "mean": {sys: v}, "p_vs_base": {sys: p}}}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "deploy": DESCRIPTION.get(self.system, self.system)}


def paired_p(a: dict[str, float], b: dict[str, float]) -> float:
    """Two-sided paired t-test p-value over the shared queries (ranx's test); 1.0 when undefined."""
    from ranx.statistical_tests import paired_student_t_test

    qids = sorted(set(a) & set(b))
    x, y = np.array([a[q] for q in qids]), np.array([b[q] for q in qids])
    if len(qids) < 2 or np.allclose(x, y):
        return 1.0
    from retrieval.evaluate import RANX_LOCK

    with RANX_LOCK:
        p, _ = paired_student_t_test(x, y)
    return float(p) if np.isfinite(p) else 1.0


def _mean(scores: dict[str, float]) -> float:
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def _worse(a: dict[str, float], b: dict[str, float], max_p: float) -> bool:
    """``a`` significantly below ``b``."""
    return _mean(a) < _mean(b) and paired_p(a, b) < max_p


def recommend(dev: dict[str, PerQuery], general: PerQuery | None = None, tie: float = 0.005,
              max_p: float = 0.05) -> Recommendation:
    """The system to deploy from per-query dev nDCG@10 of each system, by group (``unseen``, ``seen``)."""
    dev = {g: per for g, per in dev.items() if per and any(per.values())}
    if not dev:
        raise ValueError("no dev evidence: the recommendation needs per-query dev scores")
    primary = "unseen" if "unseen" in dev else "seen" if "seen" in dev else next(iter(dev))
    systems = [s for s in SIMPLEST_FIRST if all(s in per for per in dev.values())]
    evidence = {g: {"n": len(per.get("base", {})), "mean": {s: _mean(per[s]) for s in systems},
                    "p_vs_base": {s: paired_p(per[s], per["base"]) for s in systems if s != "base"}}
                for g, per in dev.items()}

    disqualified: dict[str, str] = {}
    for s in systems:
        other = COUNTERPART.get(s)
        if other is None or other not in systems:
            continue
        unseen, seen = dev.get("unseen"), dev.get("seen")
        if unseen is not None and _mean(unseen[s]) < _mean(unseen[other]) - 1e-12:
            disqualified[s] = (f"below {other} on dev queries of unseen documents "
                               f"({_mean(unseen[s]):.4f} vs {_mean(unseen[other]):.4f}, p={paired_p(unseen[s], unseen[other]):.3f})")
        elif seen is not None and _worse(seen[s], seen[other], max_p):
            disqualified[s] = (f"significantly below {other} on dev queries of seen documents "
                               f"({_mean(seen[s]):.4f} vs {_mean(seen[other]):.4f}, p={paired_p(seen[s], seen[other]):.3f})")
        elif general and "tuned" in general and "base" in general and _worse(general["tuned"], general["base"], max_p):
            disqualified[s] = (f"the tuned model is significantly below the base model on the general dataset "
                               f"({_mean(general['tuned']):.4f} vs {_mean(general['base']):.4f}): it forgot")

    allowed = [s for s in systems if s not in disqualified]
    scores = {s: _mean(dev[primary][s]) for s in allowed}
    best = max(scores.values())
    tied = [s for s in allowed if scores[s] >= best - tie]
    seen = dev.get("seen") if primary != "seen" else None
    chosen = next(s for s in tied if not (seen and any(_worse(seen[s], seen[t], max_p) for t in tied if t != s)))
    group_name = {"unseen": "dev queries of unseen documents", "seen": "dev queries of seen documents"}.get(primary, "dev queries")
    reason = (f"best nDCG@10 on {group_name} ({scores[chosen]:.4f}; base {_mean(dev[primary]['base']):.4f}, "
              f"n={evidence[primary]['n']})")
    if len(tied) > 1:
        reason += f"; within {tie} of it: {', '.join(t for t in tied if t != chosen)}, the simpler system wins ties"
    warnings = []
    if "tuned" in systems and "unseen" in dev and _mean(dev["unseen"]["tuned"]) < _mean(dev["unseen"]["base"]) - 1e-12:
        warnings.append(f"The tuned model is worse than the base model on dev queries whose relevant documents it never "
                        f"saw in training (nDCG@10 {_mean(dev['unseen']['tuned']):.4f} vs {_mean(dev['unseen']['base']):.4f}): "
                        f"on new documents it will do worse than the model you started from.")
    return Recommendation(chosen, reason, primary, warnings, disqualified, evidence)
