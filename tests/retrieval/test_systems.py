"""The one search-evaluate-write path, with the one-hot keyword encoder: rankings and metrics known by hand."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import keyword_cosine

CORPUS = {
    "d1": {"title": "", "text": "cats purr"},
    "d2": {"title": "", "text": "cats sleep on warm windows"},
    "d3": {"title": "", "text": "dogs bark"},
    "d4": {"title": "", "text": "dogs fetch sticks in the park"},
    "d5": {"title": "", "text": "the sun is a star"},
}
QUERIES = {"qa": "cats purr and sleep", "qb": "dogs bark in the park", "qc": "the moon"}
QRELS = {"qa": {"d2": 1}, "qb": {"d4": 1}, "qc": {"d5": 1}}


def hand_ranking(query: str) -> list[tuple[str, float]]:
    scores = sorted(((d, keyword_cosine(query, doc["text"])) for d, doc in CORPUS.items()), key=lambda x: -x[1])
    return [(d, s) for d, s in scores if s > 0] + [(d, s) for d, s in scores if s <= 0]


def test_the_keyword_encoder_ranks_exactly_as_computed_by_hand_and_the_files_agree(keyword_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from retrieval.retriever import build_or_load
    from retrieval.systems import evaluate_systems

    model = SentenceTransformer(str(keyword_model_dir), device="cpu")
    stored = build_or_load(model, "keyword", CORPUS, tmp_path / "index", progress=False)
    result = evaluate_systems(tmp_path / "run", {"keyword": (model, stored)}, QUERIES, QRELS, k=5)

    written: dict[str, list[tuple[str, float]]] = {}
    for line in (tmp_path / "run" / "runs" / "keyword.trec").read_text().splitlines():
        qid, _, doc, rank, score, _ = line.split()
        assert int(rank) == len(written.setdefault(qid, [])) + 1
        written[qid].append((doc, float(score)))
    for qid, text in QUERIES.items():
        expected = hand_ranking(text)
        distinct = [s for _, s in expected if s > 0]
        assert len(set(distinct)) == len(distinct), "the fixture should have no ties among matching documents"
        matching = [d for d, s in expected if s > 0]
        assert [d for d, _ in written[qid][: len(matching)]] == matching, qid
        for doc, score in written[qid]:
            assert score == pytest.approx(keyword_cosine(text, CORPUS[doc]["text"]), abs=1e-6)

    # qa: d2 shares "cats", "sleep" of 4 words (cos 2/sqrt(4*5)) vs d1's "cats", "purr" (2/sqrt(4*2)): d1 first
    assert written["qa"][0][0] == "d1" and written["qa"][1][0] == "d2"
    ranks = {"qa": 2, "qb": 1, "qc": 1}  # qb: d4 shares "in", "the", "park", "dogs"; qc: only d5 has "the"
    assert {q: [d for d, _ in written[q]].index(next(iter(QRELS[q]))) + 1 for q in QRELS} == ranks
    ndcg = sum(1 / math.log2(r + 1) for r in ranks.values()) / 3
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["keyword"]["ndcg@10"] == pytest.approx(ndcg) == result["metrics"]["keyword"]["ndcg@10"]
    assert metrics["keyword"]["recall@1"] == pytest.approx(2 / 3)
    assert result["comparison"] is None and not (tmp_path / "run" / "comparison.json").exists()  # one system
    per_query = json.loads((tmp_path / "run" / "per_query.json").read_text())
    assert per_query["first_relevant_rank"]["keyword"] == ranks


def test_document_index_reuses_the_base_index_only_for_the_same_document_side(keyword_model_dir, tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    from retrieval.retriever import build_or_load
    from retrieval.systems import document_index

    keyword = SentenceTransformer(str(keyword_model_dir), device="cpu")
    base = build_or_load(keyword, "keyword", CORPUS, tmp_path / "base", progress=False)
    assert document_index(keyword, "keyword", CORPUS, tmp_path / "other", reuse=base, progress=False) is base
    own = document_index(tiny_model, "tiny", CORPUS, tmp_path / "tiny", reuse=base, progress=False)
    assert own is not base and own.path == tmp_path / "tiny" and own.meta.model == "tiny"
