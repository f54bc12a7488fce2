"""Hard-negative mining on hand-built unit vectors, where every score and rank is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.negatives import MiningConfig, load_mined, mine_hard_negatives, save_mined
from index import IndexMeta, build_index, save_index


def unit_index(tmp_path, cosines: dict[str, dict[int, float]], n_queries: int, embeddings: bool = True):
    """An exact index whose doc ``d`` has cosine ``cosines[d][q]`` with query axis ``q`` (the rest on its own axis)."""
    ids = list(cosines)
    dim = n_queries + len(ids)
    vectors = np.zeros((len(ids), dim), dtype=np.float32)
    for row, doc in enumerate(ids):
        for q, c in cosines[doc].items():
            vectors[row, q] = c
        vectors[row, n_queries + row] = np.sqrt(1.0 - sum(c * c for c in cosines[doc].values()))
    meta = IndexMeta(model="m", model_fingerprint="fp", dim=dim, doc_ids=ids, corpus_fingerprint="c")
    stored = save_index(tmp_path / "idx", build_index(vectors), meta, vectors if embeddings else None)
    queries = np.eye(n_queries, dim, dtype=np.float32)
    return stored, queries


def ladder(n: int, top: float = 0.7, step: float = 0.05) -> dict[str, dict[int, float]]:
    """Docs n0, n1, ... scoring top, top - step, ... against query 0."""
    return {f"n{i}": {0: round(top - i * step, 4)} for i in range(n)}


def test_known_positives_are_never_mined_and_the_rank_window_is_respected(tmp_path):
    docs = {"p1": {0: 0.95}, "p2": {0: 0.5}} | ladder(8)  # n0=0.70 ... n7=0.35; p2 sits inside the ladder
    stored, q = unit_index(tmp_path, docs, 1)
    config = MiningConfig(rank_start=2, rank_end=5, margin=1.0, num_negatives=10)
    mined = mine_hard_negatives(stored, q, ["q0"], {"q0": {"p1": 1, "p2": 2, "n7": 0}}, config)
    # non-positive ranking: n0 n1 n2 n3 ...; ranks 2..4 are n1 n2 n3
    assert [d for d, _ in mined.negatives["q0"]] == ["n1", "n2", "n3"]
    assert [s for _, s in mined.negatives["q0"]] == pytest.approx([0.65, 0.60, 0.55], abs=1e-5)
    assert mined.positive_scores["q0"] == pytest.approx(0.95, abs=1e-5)
    assert mined.suspects == [] and mined.starved == []


def test_a_near_duplicate_of_the_positive_becomes_a_suspect_with_both_scores(tmp_path):
    docs = {"pos": {0: 0.8}, "dup": {0: 0.79}} | ladder(3, top=0.5)
    stored, q = unit_index(tmp_path, docs, 1)
    corpus = {d: {"title": d.upper(), "text": f"text of {d}"} for d in docs}
    config = MiningConfig(rank_start=1, rank_end=10, margin=0.95, num_negatives=5)
    mined = mine_hard_negatives(stored, q, ["q0"], {"q0": {"pos": 1}}, config, queries={"q0": "what"}, corpus=corpus)
    assert [d for d, _ in mined.negatives["q0"]] == ["n0", "n1", "n2"]
    [suspect] = mined.suspects
    assert suspect["query_id"] == "q0" and suspect["doc_id"] == "dup" and suspect["rank"] == 1
    assert suspect["doc_score"] == pytest.approx(0.79, abs=1e-5)
    assert suspect["positive_score"] == pytest.approx(0.8, abs=1e-5)
    assert suspect["query_text"] == "what"
    assert suspect["doc_snippet"] == "DUP text of dup" and suspect["positive_snippet"] == "POS text of pos"


def test_a_query_whose_positive_ranks_low_is_starved_and_reported(tmp_path):
    docs = {"weak": {0: 0.2, 1: 0.0}, "good": {1: 0.9}} | ladder(4, top=0.6)
    stored, q = unit_index(tmp_path, docs, 2)
    qrels = {"low": {"weak": 1}, "fine": {"good": 1}}
    mined = mine_hard_negatives(stored, q, ["low", "fine"], qrels, MiningConfig(rank_start=1, rank_end=5))
    assert mined.starved == ["low"]
    assert mined.negatives["low"] == []
    assert {s["doc_id"] for s in mined.suspects if s["query_id"] == "low"} == {"n0", "n1", "n2", "n3"}
    assert len(mined.negatives["fine"]) == 1
    assert mined.counts() == {"queries": 2, "negatives": 1, "suspects": 4, "starved": 1}


def test_the_same_seed_draws_the_same_sample_and_other_seeds_differ(tmp_path):
    stored, q = unit_index(tmp_path, {"pos": {0: 0.9}} | ladder(12, top=0.6), 1)

    def draw(seed: int) -> list[str]:
        config = MiningConfig(rank_start=1, rank_end=13, num_negatives=3, seed=seed)
        return [d for d, _ in mine_hard_negatives(stored, q, ["q0"], {"q0": {"pos": 1}}, config).negatives["q0"]]

    assert draw(7) == draw(7)
    assert len(draw(7)) == 3 and len(set(draw(7))) == 3
    assert len({tuple(draw(seed)) for seed in range(6)}) > 1


def test_without_saved_embeddings_the_positive_score_is_reconstructed_from_the_index(tmp_path):
    stored, q = unit_index(tmp_path, {"pos": {0: 0.9}} | ladder(3), 1, embeddings=False)
    assert stored.embeddings() is None
    mined = mine_hard_negatives(stored, q, ["q0"], {"q0": {"pos": 1}}, MiningConfig(rank_start=1, rank_end=4))
    assert mined.positive_scores["q0"] == pytest.approx(0.9, abs=1e-5)


def test_a_positive_missing_from_the_index_is_a_clear_error(tmp_path):
    stored, q = unit_index(tmp_path, ladder(3), 1)
    with pytest.raises(ValueError, match="not in the index"):
        mine_hard_negatives(stored, q, ["q0"], {"q0": {"elsewhere": 1}}, MiningConfig())


def test_a_bad_rank_window_is_refused():
    with pytest.raises(ValueError, match="rank window"):
        MiningConfig(rank_start=50, rank_end=10)


def test_save_and_load_round_trip(tmp_path):
    docs = {"weak": {0: 0.2, 1: 0.0}, "good": {1: 0.9}} | ladder(4, top=0.6)
    stored, q = unit_index(tmp_path, docs, 2)
    config = MiningConfig(rank_start=1, rank_end=5, num_negatives=2, seed=3)
    mined = mine_hard_negatives(stored, q, ["low", "fine"], {"low": {"weak": 1}, "fine": {"good": 1}}, config)
    save_mined(mined, tmp_path / "mined")
    assert sorted(p.name for p in (tmp_path / "mined").iterdir()) == ["mining.json", "negatives.jsonl", "suspects.jsonl"]
    assert load_mined(tmp_path / "mined") == mined
