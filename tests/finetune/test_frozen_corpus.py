"""The frozen-corpus InfoNCE: the full-corpus softmax, with known positives and suspects masked."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from finetune.losses.core import PositivePairs
from finetune.losses.frozen_corpus import FrozenCorpusInfoNCE


class _Fixed(torch.nn.Module):
    """A 'model' whose query embeddings are parameters, so gradients are easy to read."""

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.vectors = torch.nn.Parameter(vectors.clone())

    def forward(self, features):
        return {"sentence_embedding": self.vectors[features["rows"]]}


def _setup(masked=None):
    torch.manual_seed(0)
    documents = F.normalize(torch.randn(50, 8), dim=-1)
    model = _Fixed(torch.randn(4, 8))
    loss = FrozenCorpusInfoNCE(model, documents, positives={0: {3, 7}, 1: {5}}, masked=masked or {}, temperature=0.1)
    return model, documents, loss


def test_equals_cross_entropy_over_the_whole_corpus_when_nothing_is_masked():
    model, documents, loss = _setup()
    labels = torch.tensor([[2, 11], [3, 12]])  # queries without other positives
    got = loss([{"rows": torch.tensor([2, 3])}], labels)
    logits = F.normalize(model.vectors[[2, 3]], dim=-1) @ documents.T / 0.1
    assert got.item() == pytest.approx(F.cross_entropy(logits, torch.tensor([11, 12])).item(), rel=1e-6)
    assert loss.last_stats["n_candidates"] == 50


def test_other_positives_and_suspects_are_masked_and_the_target_is_not():
    model, documents, loss = _setup(masked={0: {9}})
    labels = torch.tensor([[0, 3]])  # query 0, target doc 3; doc 7 is its other positive, doc 9 a suspect
    got = loss([{"rows": torch.tensor([0])}], labels)
    logits = (F.normalize(model.vectors[[0]], dim=-1) @ documents.T / 0.1).squeeze(0)
    keep = [j for j in range(50) if j not in (7, 9)]
    expected = -(logits[3] - torch.logsumexp(logits[keep], dim=0))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.last_stats["n_candidates"] == 48
    assert loss.last_stats["mi_lower_bound"] == pytest.approx(math.log(48) - got.item(), rel=1e-5)


def test_masked_suspects_are_honoured_when_positives_come_prebuilt():
    """A prebuilt PositivePairs (built once, shared with other losses) must not make ``masked`` vanish."""
    torch.manual_seed(0)
    documents = F.normalize(torch.randn(50, 8), dim=-1)
    model = _Fixed(torch.randn(4, 8))
    from_dict = FrozenCorpusInfoNCE(model, documents, positives={0: {3, 7}, 1: {5}}, masked={0: {9}}, temperature=0.1)
    prebuilt = FrozenCorpusInfoNCE(model, documents, positives=PositivePairs({0: {3, 7}, 1: {5}}), masked={0: {9}},
                                   temperature=0.1)
    batch, labels = [{"rows": torch.tensor([0])}], torch.tensor([[0, 3]])
    assert prebuilt(batch, labels).item() == pytest.approx(from_dict(batch, labels).item(), rel=1e-6)
    assert prebuilt.last_stats["n_candidates"] == 48  # 50 minus doc 7 (other positive) and doc 9 (suspect)
    assert len(prebuilt.excluded) == len(from_dict.excluded) == 4


def test_documents_stay_frozen_even_given_a_tensor_that_requires_grad_while_the_queries_learn():
    """Frozen by construction, not because the caller's tensor happened not to need a gradient.

    The documents are a leaf that requires grad and the batch's targets are among them (docs 3
    and 5, every other document a negative), so a loss that let the buffer join the graph would
    give them a gradient. One SGD step over the query vectors and the documents together must
    move the queries of the batch and leave every document, and the loss's buffer, as it was.
    """
    torch.manual_seed(0)
    documents = F.normalize(torch.randn(50, 8), dim=-1).requires_grad_()
    model = _Fixed(torch.randn(4, 8))
    loss = FrozenCorpusInfoNCE(model, documents, positives={0: {3, 7}, 1: {5}}, temperature=0.1)
    documents_before, queries_before = documents.detach().clone(), model.vectors.detach().clone()
    optimizer = torch.optim.SGD([*loss.parameters(), documents], lr=1.0)

    loss([{"rows": torch.tensor([0, 1])}], torch.tensor([[0, 3], [1, 5]])).backward()
    assert documents.grad is None and not loss.documents.requires_grad
    optimizer.step()

    assert torch.equal(documents.detach(), documents_before) and torch.equal(loss.documents, documents_before)
    moved = (model.vectors.detach() - queries_before).abs().sum(dim=1)
    assert (moved[[0, 1]] > 0).all()  # the queries of the batch learn
    assert (moved[[2, 3]] == 0).all()  # and only they


def test_k_sampling_draws_exactly_k_distinct_negatives_that_are_never_positives_or_masked():
    from finetune.losses.frozen_corpus import sample_negatives

    excluded = torch.zeros(3, 20, dtype=torch.bool)
    excluded[0, [1, 2, 3]] = True  # a query's positives, suspects and target
    excluded[1, :17] = True  # only 3 documents allowed: all kept
    generator = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(50):
        mask = sample_negatives(excluded, 4, generator)
        kept = ~mask
        assert kept[0].sum() == 4 and kept[2].sum() == 4 and kept[1].sum() == 3
        assert not (kept & excluded).any()  # a drawn negative is never excluded
        draws.append(tuple(kept[0].nonzero().flatten().tolist()))
    assert len(set(draws)) > 40  # drawn afresh each time
    counts = torch.zeros(20)
    for d in draws:
        counts[list(d)] += 1
    assert counts[[1, 2, 3]].sum() == 0 and counts.max() < 30  # every allowed document gets drawn, none always


def test_with_k_negatives_the_loss_is_cross_entropy_over_the_target_and_the_k_drawn():
    model, documents, _ = _setup(masked={0: {9}})
    loss = FrozenCorpusInfoNCE(model, documents, positives={0: {3, 7}, 1: {5}}, masked={0: {9}}, temperature=0.1,
                               num_negatives=5, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([[0, 3], [1, 5]])
    got = loss([{"rows": torch.tensor([0, 1])}], labels)
    assert loss.last_stats["n_candidates"] == 6  # K + 1, whatever the corpus size
    assert loss.last_stats["mi_lower_bound"] == pytest.approx(math.log(6) - got.item(), rel=1e-5)
    # replay the draw: same generator state, same mask
    from finetune.losses.frozen_corpus import sample_negatives

    excluded = loss.excluded.contains(torch.tensor([0, 1]), torch.arange(50))
    excluded[[0, 1], [3, 5]] = True
    kept = ~sample_negatives(excluded, 5, torch.Generator().manual_seed(3))
    assert not kept[0, [3, 7, 9]].any() and not kept[1, 5]
    logits = F.normalize(model.vectors[[0, 1]], dim=-1) @ documents.T / 0.1
    expected = [-(logits[i, t] - torch.logsumexp(logits[i, kept[i] | (torch.arange(50) == t)], dim=0))
                for i, t in ((0, 3), (1, 5))]
    assert got.item() == pytest.approx(float(sum(expected) / 2), rel=1e-6)


def test_corpus_negatives_is_a_query_mode_flag():
    from finetune.config import FinetuneConfig
    from retrieval.errors import UsageError

    FinetuneConfig(mode="query", corpus_negatives=15).validate()
    with pytest.raises(UsageError, match="--mode query"):
        FinetuneConfig(mode="full", corpus_negatives=15).validate()
    assert FinetuneConfig(mode="query").fingerprint() == FinetuneConfig(mode="query", corpus_negatives=0).fingerprint()
    assert FinetuneConfig(mode="query").fingerprint() != FinetuneConfig(mode="query", corpus_negatives=3).fingerprint()


def test_k_sampling_resumed_from_a_checkpoint_draws_what_the_uninterrupted_run_drew():
    from types import SimpleNamespace

    from finetune.losses.frozen_corpus import ReseedEachStep, sample_negatives

    excluded = torch.zeros(4, 30, dtype=torch.bool)
    excluded[:, 0] = True

    def draws(steps, generator):
        callback, out = ReseedEachStep(generator, seed=11), []
        for step in steps:
            callback.on_step_begin(None, SimpleNamespace(global_step=step), None)
            out.append(sample_negatives(excluded, 5, generator))
        return out

    whole = draws(range(6), torch.Generator())
    resumed = draws(range(3, 6), torch.Generator().manual_seed(11))  # a new process restarts the generator at the seed
    assert all(torch.equal(a, b) for a, b in zip(whole[3:], resumed))
    assert not torch.equal(whole[0], whole[3])  # and steps still differ

