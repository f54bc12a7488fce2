"""``bench/widths.py`` scores a row at a truncated width as the tuned job's widths table does (retrieval.widths)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.bench.load import load_bench_script


@pytest.fixture(scope="module")
def widths():
    return load_bench_script("widths")


def test_a_width_run_scores_as_the_reports_widths_table(widths):
    from retrieval.evaluate import evaluate
    from retrieval.widths import width_rows

    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(300, 32)).astype(np.float32), rng.normal(size=(20, 32)).astype(np.float32)
    doc_ids, qids = [f"d{i}" for i in range(300)], [f"q{i}" for i in range(20)]
    # each query's relevant documents: its 3 nearest at full width, so truncation has something to lose
    full = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (docs / np.linalg.norm(docs, axis=1, keepdims=True)).T
    qrels = {q: {doc_ids[j]: 1 for j in np.argsort(-full[i])[:3]} for i, q in enumerate(qids)}
    expected = {r["dim"]: r for r in width_rows(docs, doc_ids, queries, qids, qrels, [32, 16, 4])}
    for dim in (32, 16, 4):
        run = widths.width_run(docs, doc_ids, queries, qids, dim, "x")
        got = evaluate(qrels, {"x": run}, ["ndcg@10", "recall@100"])["x"]
        assert got["ndcg@10"] == pytest.approx(expected[dim]["ndcg@10"], abs=1e-9)
        assert got["recall@100"] == pytest.approx(expected[dim]["recall@100"], abs=1e-9)
    assert expected[32]["ndcg@10"] == pytest.approx(1.0) and expected[4]["ndcg@10"] < 0.9


def test_the_table_has_a_row_per_width_and_run_with_p_only_against_the_first(widths):
    cell = {"all_ndcg@10": 0.7, "all_recall@100": 0.9, "index_mib": 1.0}
    results = {"a": {"64": dict(cell), "32": dict(cell)}, "b": {"64": {**cell, "all_p": 0.04}, "32": {**cell, "all_p": 1e-5}}}
    lines = widths.table(results, ["a", "b"], ["all"]).splitlines()
    assert [line.split(" | ")[0:3] for line in lines[2:]] == [["| 64", "1.0 MiB", "a"], ["| 64", "1.0 MiB", "b"],
                                                             ["| 32", "1.0 MiB", "a"], ["| 32", "1.0 MiB", "b"]]
    assert "(0.040)" in lines[3] and "(" not in lines[2] and "(<0.001)" in lines[5]
