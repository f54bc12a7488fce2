"""Which system to deploy, on constructed per-query dev results."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.recommend import paired_p, recommend


def _scores(values) -> dict[str, float]:
    return {f"q{i}": float(v) for i, v in enumerate(values)}


def _group(n: int, seed: int, **shift: float) -> dict[str, dict[str, float]]:
    """Per-query nDCG of the four systems: base plus a per-system shift and a little noise."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, n)
    out = {"base": _scores(base)}
    for system in ("tuned", "base+bm25", "tuned+bm25"):
        out[system] = _scores(np.clip(base + shift.get(system, 0.0) + rng.normal(0, 0.01, n), 0, 1))
    return out


def test_a_tuned_model_worse_on_unseen_documents_is_never_recommended():
    dev = {"unseen": _group(60, 0, tuned=-0.02, **{"tuned+bm25": -0.07, "base+bm25": -0.05}),
           "seen": _group(60, 1, tuned=0.30, **{"tuned+bm25": 0.28})}
    rec = recommend(dev)
    assert rec.system == "base"
    assert {"tuned", "tuned+bm25"} <= set(rec.disqualified)
    assert any("worse than the base model" in w for w in rec.warnings)


def test_ties_go_to_the_simpler_system():
    dev = {"unseen": _group(60, 2, tuned=0.002, **{"base+bm25": 0.003, "tuned+bm25": 0.004})}
    assert recommend(dev).system == "base"
    dev = {"unseen": _group(60, 2, tuned=0.05, **{"base+bm25": 0.003, "tuned+bm25": 0.052})}
    rec = recommend(dev)
    assert rec.system == "tuned" and "tuned+bm25" in rec.reason and not rec.warnings


def test_a_clearly_better_system_wins_and_seen_evidence_breaks_a_tie():
    dev = {"unseen": _group(60, 3, tuned=0.04, **{"base+bm25": 0.01, "tuned+bm25": 0.08})}
    assert recommend(dev).system == "tuned+bm25"
    dev = {"unseen": _group(60, 4, tuned=0.003), "seen": _group(60, 5, tuned=0.2)}
    assert recommend(dev).system == "tuned"  # tied on unseen, significantly better on seen


def test_the_forgetting_guard_rules_out_the_tuned_model():
    dev = {"unseen": _group(60, 6, tuned=0.05, **{"tuned+bm25": 0.06})}
    general = _group(80, 7, tuned=-0.1)
    rec = recommend(dev, general={"base": general["base"], "tuned": general["tuned"]})
    assert rec.system in ("base", "base+bm25") and "forgot" in rec.disqualified["tuned"]


def test_without_unseen_dev_queries_the_choice_is_made_on_the_others():
    rec = recommend({"seen": _group(40, 8, tuned=0.1)})
    assert rec.primary == "seen" and rec.system in ("tuned", "tuned+bm25")
    with pytest.raises(ValueError, match="no dev evidence"):
        recommend({})


def test_paired_p_is_the_paired_t_test():
    from scipy.stats import ttest_rel

    a, b = _scores([0.1, 0.5, 0.7, 0.2]), _scores([0.2, 0.55, 0.9, 0.2])
    assert paired_p(a, b) == pytest.approx(ttest_rel(list(a.values()), list(b.values())).pvalue)
    assert paired_p(a, a) == 1.0
