"""``bench/widths.py``'s table (its search is :func:`retrieval.widths.truncated_run`, tested in tests/retrieval)."""

from __future__ import annotations

import pytest

from tests.bench.load import load_bench_script


@pytest.fixture(scope="module")
def widths():
    return load_bench_script("widths")


def test_the_table_has_a_row_per_width_and_run_with_p_only_against_the_first(widths):
    cell = {"all_ndcg@10": 0.7, "all_recall@100": 0.9, "index_mib": 1.0}
    results = {"a": {"64": dict(cell), "32": dict(cell)}, "b": {"64": {**cell, "all_p": 0.04}, "32": {**cell, "all_p": 1e-5}}}
    lines = widths.table(results, ["a", "b"], ["all"]).splitlines()
    assert [line.split(" | ")[0:3] for line in lines[2:]] == [["| 64", "1.0 MiB", "a"], ["| 64", "1.0 MiB", "b"],
                                                             ["| 32", "1.0 MiB", "a"], ["| 32", "1.0 MiB", "b"]]
    assert "(0.040)" in lines[3] and "(" not in lines[2] and "(<0.001)" in lines[5]


def test_each_comparison_writes_its_own_file_named_for_its_rows(widths, tmp_path):
    seed42 = widths.output_path(tmp_path, ["n3-3ep", "n3-3ep-matryoshka"])
    seed7 = widths.output_path(tmp_path, ["n3-3ep-s7", "n3-3ep-matryoshka-s7"])
    assert seed42 != seed7 and seed42.parent == seed7.parent == tmp_path
    assert seed42.name == "widths-n3-3ep+n3-3ep-matryoshka.json"
    assert widths.output_path(tmp_path, ["b", "a"]) != widths.output_path(tmp_path, ["a", "b"])  # the first is the reference
