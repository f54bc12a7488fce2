"""Training queries keep every positive; epochs sample one positive per query; the dev split is deterministic."""

from __future__ import annotations

from collections import Counter

import pytest

from finetune.pairs import epoch_rows, split_train_dev, train_queries
from retrieval.data import load_beir
from retrieval.errors import DataError


def test_all_positives_of_a_query_are_kept(beir_dir):
    ds = load_beir(beir_dir)
    queries = train_queries(ds, ds.qrels["train"])
    assert queries.positives[queries.qids.index("t-cat")] == ["cat1", "cat2"]
    assert queries.qrels()["t-dog"] == {"dog1": 1, "dog2": 1}


def test_each_epoch_visits_every_query_once_with_one_sampled_positive(beir_dir):
    ds = load_beir(beir_dir)
    queries = train_queries(ds, ds.qrels["train"])
    rows = epoch_rows(queries, epochs=50, seed=1)
    n = len(queries)
    for e in range(50):
        assert sorted(i for i, _ in rows[e * n : (e + 1) * n]) == list(range(n))
    sampled = Counter(d for i, d in rows if queries.qids[i] == "t-cat")
    assert set(sampled) == {"cat1", "cat2"} and min(sampled.values()) > 10  # both positives get their turn
    assert epoch_rows(queries, 3, seed=1) == epoch_rows(queries, 3, seed=1)
    assert epoch_rows(queries, 3, seed=1) != epoch_rows(queries, 3, seed=2)


def test_held_out_dev_split_is_deterministic_and_disjoint(beir_dir):
    ds = load_beir(beir_dir)
    train, dev, how = split_train_dev(ds, dev_fraction=0.25, seed=3)
    assert len(dev) == 2 and not set(train) & set(dev) and set(train) | set(dev) == set(ds.qrels["train"])
    assert split_train_dev(ds, dev_fraction=0.25, seed=3)[1] == dev
    assert "held out" in how


def test_dataset_dev_split_is_used_when_present(beir_dir):
    ds = load_beir(beir_dir)
    ds.qrels["dev"] = {"q-cat": {"cat0": 1}}
    train, dev, how = split_train_dev(ds)
    assert dev == {"q-cat": {"cat0": 1}} and train == ds.qrels["train"] and "'dev' split" in how


def test_queries_without_any_positive_in_the_corpus_are_an_error(beir_dir):
    ds = load_beir(beir_dir)
    with pytest.raises(DataError, match="no training query has a relevant document"):
        train_queries(ds, {"t-cat": {"nope": 1}})
