"""Retrieval at Matryoshka widths: exact search over truncated, renormalised vectors, scored by ranx."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.widths import truncated_run, width_rows, widths_markdown


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(50, 8)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:10] + 0.3 * rng.normal(size=(10, 8)).astype(np.float32)
    doc_ids, qids = [f"d{i}" for i in range(50)], [f"q{i}" for i in range(10)]
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(10)}
    return docs, doc_ids, queries, qids, qrels


def test_each_width_is_exact_search_over_the_renormalised_prefix():
    from ranx import Qrels, Run, evaluate

    docs, doc_ids, queries, qids, qrels = _data()
    rows = width_rows(docs, doc_ids, queries, qids, qrels, [4, 8, 2])
    assert [r["dim"] for r in rows] == [8, 4, 2]  # widest first
    for row in rows:
        d = row["dim"]
        a = docs[:, :d] / np.linalg.norm(docs[:, :d], axis=1, keepdims=True)
        b = queries[:, :d] / np.linalg.norm(queries[:, :d], axis=1, keepdims=True)
        scores = b @ a.T  # brute force, independent of faiss
        run = Run({q: {doc_ids[j]: float(scores[i, j]) for j in np.argsort(-scores[i])[:50]} for i, q in enumerate(qids)})
        assert row["ndcg@10"] == pytest.approx(evaluate(Qrels(qrels), run, "ndcg@10"), abs=1e-6)
        assert row["index_bytes"] == 50 * d * 4
    assert rows[0]["ndcg@10"] > rows[-1]["ndcg@10"]  # 2 of 8 random coordinates lose information
    table = widths_markdown(rows)
    assert table.count("\n") == 4 and "| 8 |" in table and "100.0%" in table


def test_a_width_wider_than_the_vectors_is_refused():
    docs, doc_ids, queries, qids, qrels = _data()
    with pytest.raises(ValueError, match="do not fit"):
        width_rows(docs, doc_ids, queries, qids, qrels, [16])


def test_a_truncated_run_ranks_by_the_cosine_of_the_first_dim_coordinates():
    """Against numpy: cut both sides to ``dim``, renormalise, rank by dot product (what ``index build --dim`` serves)."""
    rng = np.random.default_rng(0)
    docs, queries = rng.normal(size=(300, 32)).astype(np.float32), rng.normal(size=(5, 32)).astype(np.float32)
    doc_ids, qids = [f"d{i}" for i in range(300)], [f"q{i}" for i in range(5)]
    for dim in (32, 16, 4):
        d = docs[:, :dim] / np.linalg.norm(docs[:, :dim], axis=1, keepdims=True)
        q = queries[:, :dim] / np.linalg.norm(queries[:, :dim], axis=1, keepdims=True)
        cosines = q.astype(np.float64) @ d.T
        run = truncated_run(docs, doc_ids, queries, qids, dim, k=10, name="x").to_dict()
        for i, qid in enumerate(qids):
            got = sorted(run[qid].items(), key=lambda item: -item[1])
            expected = np.argsort(-cosines[i])[:10]
            assert [doc for doc, _ in got] == [doc_ids[j] for j in expected]
            np.testing.assert_allclose([score for _, score in got], cosines[i, expected], atol=1e-5)
