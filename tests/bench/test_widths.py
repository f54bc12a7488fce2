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
