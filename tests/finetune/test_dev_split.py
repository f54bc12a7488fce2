"""Dev queries held out by document: no dev-unseen positive is a training positive, components stay whole."""

from __future__ import annotations

import logging
import random

import pytest

from finetune.dev_split import components, dev_split, label_seen, positives, split_by_document
from retrieval.data import load_beir


def _qrels(n_components: int = 40, seed: int = 0) -> dict[str, dict[str, int]]:
    """Components of 1-4 queries sharing documents, plus some queries with two positives."""
    rng = random.Random(seed)
    qrels, q = {}, 0
    for c in range(n_components):
        shared = f"d{c}-shared"
        for _ in range(rng.randint(1, 4)):
            judged = {shared: 1}
            if rng.random() < 0.5:
                judged[f"d{c}-own{q}"] = 1
            qrels[f"q{q}"] = judged
            q += 1
    return qrels


def test_unseen_dev_queries_share_no_positive_with_training_and_components_stay_whole():
    train = _qrels()
    split = split_by_document(train, fraction=0.2, seed=7)
    assert split.unseen and not set(split.unseen) & set(split.seen)
    assert set(split.dev) == set(split.unseen) | set(split.seen)
    assert set(split.train) | set(split.dev) == set(train) and not set(split.train) & set(split.dev)
    train_docs = positives(split.train)
    for q in split.unseen:
        assert not set(split.dev[q]) & train_docs, q
    unseen = set(split.unseen)
    for group in components(train):
        assert set(group) <= unseen or not set(group) & unseen  # held out whole, or not at all
    for q in split.seen:  # every positive of a dev-seen query is still a training positive
        assert set(split.dev[q]) <= train_docs, q
    assert abs(len(split.unseen) - 0.2 * len(train)) <= 4  # a component overshoots by at most its size


def test_seen_labels_agree_with_the_split():
    train = _qrels(seed=3)
    split = split_by_document(train, fraction=0.2, seed=1)
    seen, unseen = label_seen(split.dev, split.train)
    assert sorted(seen) == split.seen and sorted(unseen) == split.unseen


def test_the_split_is_deterministic_under_the_seed():
    train = _qrels(seed=5)
    a, b = split_by_document(train, 0.2, seed=11), split_by_document(train, 0.2, seed=11)
    assert (a.unseen, a.seen) == (b.unseen, b.seen)
    assert split_by_document(train, 0.2, seed=12).unseen != a.unseen


def test_one_giant_component_falls_back_to_random_queries_with_a_warning_naming_it(caplog):
    train = {f"q{i}": {"hub": 1, f"own{i}": 1} for i in range(30)} | {"lonely": {"far": 1}}
    with caplog.at_level(logging.WARNING, logger="finetune.dev_split"):
        split = split_by_document(train, fraction=0.2, seed=0)
    assert "one component" in caplog.text and "30 of 31" in caplog.text and "hub" in caplog.text
    assert "held out at random" in split.how and len(split.dev) == 6
    assert set(split.seen) | set(split.unseen) == set(split.dev)


def test_the_datasets_own_dev_split_is_kept_and_labelled(beir_dir):
    ds = load_beir(beir_dir)
    ds.qrels["dev"] = {"q-cat": {"cat1": 1}, "q-dog": {"dog0": 1}}  # cat1 is a training positive, dog0 is not
    split = dev_split(ds)
    assert split.dev == ds.qrels["dev"] and split.train == ds.qrels["train"]
    assert split.seen == ["q-cat"] and split.unseen == ["q-dog"] and "'dev' split" in split.how


def test_dev_evaluator_scores_each_group_and_selects_on_unseen():
    import numpy as np

    from finetune.evaluator import DevEvaluator

    class Fixed:  # queries and documents embedded as fixed one-hot vectors
        device = __import__("torch").device("cpu")

        def encode_query(self, texts, **kw):
            import torch

            return torch.tensor(np.eye(3)[[int(t) for t in texts]], dtype=torch.float32)

    docs = np.eye(3, dtype=np.float32)
    queries = {"a": "0", "b": "1", "c": "2"}
    qrels = {"a": {"d0": 1}, "b": {"d0": 1}, "c": {"d2": 1}}  # b's answer is ranked below d1
    ev = DevEvaluator(queries, qrels, ["d0", "d1", "d2"], documents=docs, groups={"unseen": ["a", "b"], "seen": ["c"]},
                      select="unseen")
    metrics = ev.score(ev.rank(Fixed()))
    assert metrics["seen_ndcg@10"] == pytest.approx(1.0)
    assert metrics["unseen_ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(3)) / 2)
    assert metrics["ndcg@10"] == pytest.approx((2.0 + 1 / np.log2(3)) / 3)
    assert ev.select_key == "unseen_ndcg@10" and ev.selected(Fixed()) == metrics["unseen_ndcg@10"]


@pytest.mark.parametrize("frozen", [True, False])
def test_dev_evaluator_under_bf16_autocast_ranks_as_in_fp32(frozen):
    """On a CPU with native bf16 the trainer evaluates under autocast; scores stay fp32 (a bf16 tensor has no numpy)."""
    import numpy as np
    import torch

    from finetune.evaluator import DevEvaluator

    rng = np.random.default_rng(0)
    q_vecs, d_vecs = rng.normal(size=(6, 16)).astype(np.float32), rng.normal(size=(20, 16)).astype(np.float32)

    class Fixed:  # re-encodes as a model would, under whatever autocast is active
        device = torch.device("cpu")

        def _lin(self, rows):
            return torch.from_numpy(rows) @ torch.eye(16)  # a matmul: bf16 under autocast

        def encode_query(self, texts, **kw):
            return self._lin(q_vecs[[int(t) for t in texts]])

        def encode_document(self, texts, **kw):
            return self._lin(d_vecs[[int(t) for t in texts]])

    queries = {f"q{i}": str(i) for i in range(6)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(6)}
    docs = dict(documents=d_vecs / np.linalg.norm(d_vecs, axis=1, keepdims=True)) if frozen else \
        dict(doc_texts=[str(i) for i in range(20)])
    runs = [DevEvaluator(queries, qrels, [f"d{i}" for i in range(20)], k=5, bf16=bf16, **docs).rank(Fixed())
            for bf16 in (False, True)]
    fp32, bf16 = (r.to_dict() for r in runs)
    assert set(fp32) == set(bf16) == set(queries)
    for q in queries:  # bf16 encoding moves scores by ~1e-2 at most; ranks of well-separated scores agree
        assert all(isinstance(s, float) for s in bf16[q].values())
        assert max(abs(bf16[q].get(d, 0) - s) for d, s in fp32[q].items() if d in bf16[q]) < 0.05
