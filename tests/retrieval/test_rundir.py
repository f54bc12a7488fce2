"""The run-directory contract between `retrieval tune` (writer) and the app (reader)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ranx import Run

from retrieval import rundir
from retrieval.evaluate import evaluate
from retrieval.errors import DataError
from retrieval.rundir import RunDir

QRELS = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2}, "q3": {"z": 1}, "q4": {"d": 1}}
# q1: relevant at ranks 2 and 4; q2: at rank 1; q3: never retrieved; q4: absent from the run.
RUN = {
    "q1": {"x": 0.9, "a": 0.8, "y": 0.7, "b": 0.6},
    "q2": {"c": 0.5, "x": 0.4},
    "q3": {"x": 0.9, "y": 0.1},
}


def brute_recall(qrels, run, k):
    """Mean over judged queries of |relevant in top k| / |relevant|, written out by hand."""
    total = 0.0
    for qid, judged in qrels.items():
        top = [d for d, _ in sorted(run.get(qid, {}).items(), key=lambda kv: -kv[1])[:k]]
        rel = {d for d, r in judged.items() if r > 0}
        total += len(rel & set(top)) / len(rel)
    return total / len(qrels)


def test_paths_follow_the_documented_layout(tmp_path):
    run = RunDir(tmp_path)
    assert run.run_json == tmp_path / "run.json" and run.model_dir == tmp_path / "model"
    assert run.base_index == tmp_path / "indexes" / "base" and run.tuned_index == tmp_path / "indexes" / "tuned"
    assert run.per_query_json.name == "per_query.json" and run.curves_json.name == "curves.json"
    assert run.geometry_json == tmp_path / "geometry" / "geometry.json"
    assert run.run_file("bm25") == (tmp_path / "runs" / "bm25.trec").resolve()


def test_a_symlink_out_of_the_run_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "run" / "model").symlink_to(tmp_path / "secret")
    with pytest.raises(DataError, match="outside"):
        RunDir(tmp_path / "run").tuned_model_path({"tuned_model": "model"})


def test_tuned_queries_search_the_base_index_unless_the_run_has_a_tuned_one(tmp_path):
    run = RunDir(tmp_path)
    run.base_index.mkdir(parents=True)
    assert run.index_for("tuned") == run.base_index
    run.tuned_index.mkdir()
    (run.tuned_index / "meta.json").write_text("{}")
    assert run.index_for("tuned") == run.tuned_index and run.index_for("base") == run.base_index


def test_readers_return_none_for_files_not_written(tmp_path):
    for read in (rundir.read_info, rundir.read_metrics, rundir.read_comparison, rundir.read_per_query,
                 rundir.read_curves, rundir.read_geometry):
        assert read(tmp_path) is None


@pytest.mark.parametrize(
    "name, text, fault",
    [
        ("metrics.json", "{not json", "unreadable"),
        ("run.json", '{"data": "x"}', "missing base_model"),
        ("per_query.json", "[1, 2]", "expected a JSON dict"),
        ("curves.json", '{"k": [1, 2], "recall": {"base": [0.5]}}', "1 recall values for 2 cut-offs"),
    ],
)
def test_an_unreadable_file_raises_data_error_naming_it(tmp_path, name, text, fault):
    (tmp_path / name).write_text(text)
    reader = {"metrics.json": rundir.read_metrics, "run.json": rundir.read_info,
              "per_query.json": rundir.read_per_query, "curves.json": rundir.read_curves}[name]
    with pytest.raises(DataError, match=fault) as err:
        reader(tmp_path)
    assert str(tmp_path / name) in str(err.value)


def test_write_info_round_trips_and_leaves_no_temporary_files(tmp_path):
    written = rundir.write_info(tmp_path, "scifact", "all-MiniLM-L6-v2", "model", settings={"epochs": 1})
    assert rundir.read_info(tmp_path) == written
    assert written["split"] == "test" and written["tuned_model"] == "model" and written["created"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_write_info_refuses_a_tuned_model_outside_the_run(tmp_path):
    with pytest.raises(DataError):
        rundir.write_info(tmp_path / "run", "scifact", "base", "../model")


def test_write_json_replaces_a_file_whole(tmp_path):
    rundir.write_json(tmp_path / "metrics.json", {"base": {"ndcg@10": 0.5}})
    rundir.write_json(tmp_path / "metrics.json", {"tuned": {"ndcg@10": 0.7}})
    assert rundir.read_metrics(tmp_path) == {"tuned": {"ndcg@10": 0.7}}


def test_write_json_writes_strict_json_with_nan_as_null(tmp_path):
    rundir.write_json(tmp_path / "comparison.json", {"tuned": {"comparisons": {"base": {"ndcg@10": float("nan")}}}, "x": [float("inf"), 1.5]})
    text = (tmp_path / "comparison.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"tuned": {"comparisons": {"base": {"ndcg@10": None}}}, "x": [None, 1.5]}


def test_recall_curve_matches_recall_counted_by_hand():
    curve = rundir.recall_curve(QRELS, Run.from_dict(RUN), ks=range(1, 6))
    assert curve == pytest.approx([brute_recall(QRELS, RUN, k) for k in range(1, 6)])
    assert curve == sorted(curve)  # recall can only grow with k


def test_recall_curve_ends_at_evaluate_recall_at_100():
    curve = rundir.recall_curve(QRELS, Run.from_dict(RUN))
    assert len(curve) == 100
    assert curve[-1] == pytest.approx(evaluate(QRELS, {"r": Run.from_dict(RUN)}, ["recall@100"])["r"]["recall@100"])


def test_first_relevant_rank_per_query_none_when_never_retrieved():
    assert rundir.first_relevant_rank(QRELS, Run.from_dict(RUN)) == {"q1": 2, "q2": 1, "q3": None, "q4": None}


def test_curves_and_per_query_payloads_have_the_documented_shape(tmp_path):
    runs = {"base": Run.from_dict(RUN), "tuned": Run.from_dict({"q1": {"a": 1.0}, "q2": {"x": 1.0, "c": 0.5}})}
    curves = rundir.curves(QRELS, runs)
    assert curves["k"] == list(range(1, 101)) and set(curves["recall"]) == {"base", "tuned"}
    payload = rundir.per_query_payload(QRELS, runs)
    assert payload["metric"] == "ndcg@10" and set(payload["systems"]["tuned"]) == set(QRELS)
    assert payload["first_relevant_rank"]["tuned"] == {"q1": 1, "q2": 2, "q3": None, "q4": None}
    # by hand: tuned finds q1's a at rank 1 (of a, b), q2's c at rank 2; q3, q4 nothing
    assert curves["recall"]["tuned"][0] == pytest.approx((0.5 + 0 + 0 + 0) / 4)
    assert curves["recall"]["tuned"][1] == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert curves["recall"]["base"][3] == pytest.approx((1 + 1 + 0 + 0) / 4)  # base: q1's a, b at ranks 2, 4; q2's c at 1
    ideal_q1 = 1 + 1 / math.log2(3)
    assert payload["systems"]["tuned"] == pytest.approx({"q1": 1 / ideal_q1, "q2": 1 / math.log2(3), "q3": 0.0, "q4": 0.0})
    assert payload["systems"]["base"]["q1"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal_q1)
