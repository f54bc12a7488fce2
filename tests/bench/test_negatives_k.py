"""``bench/negatives_k.py``: the bound read from the training log and the K plot (its training is ``finetune``'s,
tested in tests/finetune; K sampling in tests/finetune/test_frozen_corpus.py)."""

from __future__ import annotations

import math

import pytest

from tests.bench.load import load_bench_script


@pytest.fixture(scope="module")
def negatives_k():
    return load_bench_script("negatives_k")


def test_the_end_of_training_value_is_the_mean_of_the_last_quarter_of_logged_steps(negatives_k):
    log = [{"loss": v} for v in (8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0)] + [{"eval_ndcg": 0.5}]
    assert negatives_k.last_quarter_mean(log, "loss") == pytest.approx(1.5)  # the last 2 of 8 logged losses
    assert negatives_k.last_quarter_mean([{"loss": 2.0}], "loss") == 2.0
    assert negatives_k.last_quarter_mean(log, "mi_lower_bound") is None


def test_the_plot_puts_k_on_a_log_axis_with_the_base_lines_and_the_log_k_ceiling(negatives_k, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    rows = {k: {"n_candidates": n + 1, "all_ndcg@10": 0.6 + n / 1e4, "unseen_ndcg@10": 0.5, "mi_bound": math.log(n + 1) - 0.5}
            for k, n in (("1", 1), ("15", 15), ("all", 5183))}
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at it
    negatives_k.plot(rows, {"all_ndcg@10": 0.64, "unseen_ndcg@10": 0.67}, tmp_path / "k.png", "scifact")
    assert (tmp_path / "k.png").stat().st_size > 0
    left, right = figures[0].axes
    assert left.get_xscale() == right.get_xscale() == "log"
    assert list(left.lines[0].get_xdata()) == [1, 15, 5183]  # K = candidates - 1, "all" at the corpus size
    assert {line.get_ydata()[0] for line in left.lines[1:] if len(set(line.get_ydata())) == 1} >= {0.64, 0.67}
    assert list(right.lines[1].get_ydata()) == pytest.approx([math.log(2), math.log(16), math.log(5184)])
