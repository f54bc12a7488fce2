"""``bench/checkpoints.py``'s selection rules, on constructed checkpoint rows: what each rule picks, and ties."""

from __future__ import annotations

import pytest

from tests.bench.load import load_bench_script


@pytest.fixture(scope="module")
def checkpoints():
    return load_bench_script("checkpoints")


def _row(step, dev_all, dev_unseen):
    return {"step": step, "dev_ndcg@10": dev_all, "dev_unseen_ndcg@10": dev_unseen}


def test_each_rule_picks_its_checkpoint(checkpoints):
    rows = [_row(22, 0.70, 0.72), _row(44, 0.73, 0.71), _row(66, 0.71, 0.70)]
    picked = {rule: checkpoints.choose(rows, rule)["step"] for rule in checkpoints.RULES}
    assert picked == {"unseen": 22, "all": 44, "last": 66, "first": 22}


def test_a_tie_on_dev_goes_to_the_earlier_checkpoint_and_missing_dev_scores_fall_back_to_the_last(checkpoints):
    assert checkpoints.choose([_row(22, 0.7, 0.71), _row(44, 0.7, 0.71)], "unseen")["step"] == 22
    assert checkpoints.choose([_row(22, 0.7, 0.71), _row(44, 0.7, 0.71)], "all")["step"] == 22
    assert checkpoints.choose([_row(22, None, None), _row(44, None, None)], "unseen")["step"] == 44


def test_checkpoints_are_listed_in_training_order_and_dev_scores_found_by_step(checkpoints, tmp_path):
    for step in (100, 22, 44):
        (tmp_path / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
    (tmp_path / "checkpoints" / "dev_start.json").write_text("{}")
    assert [s for s, _ in checkpoints.checkpoints(tmp_path)] == [22, 44, 100]
    history = [{"step": 0, "ndcg@10": 0.6}, {"step": 22, "ndcg@10": 0.7}]
    assert checkpoints.dev_at(history, 22)["ndcg@10"] == 0.7 and checkpoints.dev_at(history, 44) == {}
