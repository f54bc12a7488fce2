"""Metrics come from ranx and equal values computed by hand on a toy example."""

from __future__ import annotations

import math

import pytest
from ranx import Qrels, Run

from retrieval.evaluate import compare, evaluate, per_query

QRELS = {"q1": {"a": 1, "c": 1}, "q2": {"x": 1}}
RUN = Run.from_dict({"q1": {"a": 0.9, "b": 0.8, "c": 0.7}, "q2": {"y": 0.9, "z": 0.5}})


def test_metrics_equal_hand_computed_values():
    got = evaluate(QRELS, {"r": RUN})["r"]
    dcg = 1 + 1 / math.log2(4)          # relevant at ranks 1 and 3
    idcg = 1 + 1 / math.log2(3)         # ideal: ranks 1 and 2
    assert got["ndcg@10"] == pytest.approx((dcg / idcg + 0.0) / 2)
    assert got["recall@1"] == pytest.approx((0.5 + 0) / 2)
    assert got["recall@5"] == pytest.approx((1.0 + 0) / 2)
    assert got["mrr@10"] == pytest.approx((1.0 + 0) / 2)
    assert got["map@100"] == pytest.approx(((1 + 2 / 3) / 2 + 0) / 2)


def test_judged_query_missing_from_run_scores_zero_and_extra_queries_are_ignored():
    run = Run.from_dict({"q1": {"a": 1.0, "c": 0.5}, "q9": {"a": 1.0}})
    assert evaluate(QRELS, {"r": run})["r"]["ndcg@10"] == pytest.approx(0.5)
    assert per_query(QRELS, run) == {"q1": pytest.approx(1.0), "q2": 0.0}
    assert "q9" in run.to_dict()  # the caller's run is left whole


def test_compare_gives_p_values_and_win_loss_counts():
    better = Run.from_dict({"q1": {"a": 0.9, "c": 0.8}, "q2": {"x": 0.9}})
    report = compare(QRELS, {"base": RUN, "better": better}, ["ndcg@10"]).to_dict()
    from scipy.stats import ttest_rel

    a, b = per_query(QRELS, RUN), per_query(QRELS, better)
    expected = ttest_rel([a[q] for q in QRELS], [b[q] for q in QRELS]).pvalue  # ranx "student": the paired t-test
    assert float(report["base"]["comparisons"]["better"]["ndcg@10"]) == pytest.approx(expected, abs=1e-4)
    assert report["better"]["win_tie_loss"]["base"]["ndcg@10"] == {"W": 2, "T": 0, "L": 0}


def test_ids_reach_ranx_at_one_width_and_results_come_back_under_the_callers_ids():
    import ranx

    qrels = {"a-very-long-query-id": {"doc-with-a-long-id": 1, "d": 1}, "q": {"x": 2}}
    run = Run.from_dict({"a-very-long-query-id": {"d": 0.9, "doc-with-a-long-id": 0.8}, "q": {"y": 0.5, "x": 0.4}})
    seen = []
    real = ranx.evaluate

    def spy(qrels_, run_, *args, **kwargs):
        seen.extend(len(q) for q in run_.to_dict())
        seen.extend(len(d) for docs in run_.to_dict().values() for d in docs)
        return real(qrels_, run_, *args, **kwargs)

    import retrieval.evaluate as ours

    ours.ranx.evaluate = spy  # ranx is the same module object everywhere: restored below
    try:
        direct = real(Qrels.from_dict(qrels), Run.from_dict(run.to_dict()), "ndcg@10")
        assert evaluate(qrels, {"r": run}, ["ndcg@10"])["r"]["ndcg@10"] == pytest.approx(direct)
        assert set(per_query(qrels, run)) == set(qrels)
    finally:
        ours.ranx.evaluate = real
    assert set(seen) == {ours.ID_WIDTH}


def test_scoring_while_the_background_warm_up_runs_is_safe_and_waits_for_it():
    """numba's default threading layer aborts the process if two threads run ranx's parallel kernels at once."""
    import threading

    import retrieval.evaluate as ours

    ours._warmed.discard((3, 5))
    thread = ours.warm_up(query_id_width=3, doc_id_width=5)
    assert thread is not None and ours.warm_up(query_id_width=3, doc_id_width=5) is None  # once per widths
    results = []

    def score():
        results.append(evaluate(QRELS, {"r": RUN}, ["ndcg@10"])["r"]["ndcg@10"])

    workers = [threading.Thread(target=score) for _ in range(3)]
    for w in workers:
        w.start()
    for w in [thread, *workers]:
        w.join(timeout=300)
    assert len(results) == 3 and len(set(results)) == 1
