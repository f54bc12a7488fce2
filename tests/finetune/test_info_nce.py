"""InfoNCE: the sentence-transformers MNRL objective when masking is off, plus false-negative masking."""

from __future__ import annotations

import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
)

from finetune.losses.core import PositivePairs, info_nce_from_scores, known_positive_mask
from finetune.losses.info_nce import InfoNCE

QUERIES = ["cats purr", "dogs bark", "the sun", "the moon"]
POSITIVES = ["cats sleep on warm windows", "dogs fetch sticks", "a star of hot plasma", "orbits the earth"]
NEGATIVES = [["rain falls from clouds", "fish swim"], ["trees grow", "birds fly south"],
             ["cold winter", "rivers lakes"], ["roots in soil", "oceans"]]


def batch(model, n_negatives: int) -> list[dict]:
    columns = [QUERIES, POSITIVES] + [[row[k] for row in NEGATIVES] for k in range(n_negatives)]
    return [model.preprocess(texts) for texts in columns]


def ids(n_negatives: int) -> torch.Tensor:
    """labels [query_idx, positive_doc_idx, negative_doc_idx...] with all documents distinct."""
    return torch.tensor([[q, 100 + q] + [200 + 10 * q + k for k in range(n_negatives)] for q in range(len(QUERIES))])


def grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("n_negatives", [0, 2])
def test_equals_multiple_negatives_ranking_loss_when_masking_is_off(tiny_model, n_negatives):
    tiny_model.eval()
    ours = InfoNCE(tiny_model, temperature=0.05, mask_known_positives=False)(batch(tiny_model, n_negatives), ids(n_negatives))
    ours.backward()
    our_grads = grads(tiny_model)
    tiny_model.zero_grad()
    theirs = MultipleNegativesRankingLoss(tiny_model, scale=20)(batch(tiny_model, n_negatives), ids(n_negatives))
    theirs.backward()
    assert abs(ours.item() - theirs.item()) < 1e-6
    for mine, other in zip(our_grads, grads(tiny_model), strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-5)  # float32 op-order noise


def test_masking_changes_nothing_when_no_candidate_is_a_known_positive(tiny_model):
    tiny_model.eval()
    positives = {q: {100 + q} for q in range(4)}
    ours = InfoNCE(tiny_model, positives=positives)(batch(tiny_model, 2), ids(2))
    theirs = MultipleNegativesRankingLoss(tiny_model, scale=20)(batch(tiny_model, 2), ids(2))
    assert abs(ours.item() - theirs.item()) < 1e-6


@pytest.mark.parametrize("n_negatives", [0, 1])
def test_symmetric_equals_multiple_negatives_symmetric_ranking_loss(tiny_model, n_negatives):
    tiny_model.eval()
    loss = InfoNCE(tiny_model, symmetric=True, mask_known_positives=False)
    ours = loss(batch(tiny_model, n_negatives), ids(n_negatives))
    theirs = MultipleNegativesSymmetricRankingLoss(tiny_model, scale=20)(batch(tiny_model, n_negatives), ids(n_negatives))
    assert abs(ours.item() - theirs.item()) < 1e-6


def embeddings(n_negatives: int = 1, batch_size: int = 3, dim: int = 16, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, dim, generator=generator, requires_grad=True) for _ in range(2 + n_negatives)]


def test_a_hard_negative_that_is_a_known_positive_gets_zero_gradient_when_masked():
    # doc 99 is query 2's mined negative but labelled relevant to every query: no row may push it away.
    labels = torch.tensor([[0, 10, 20], [1, 11, 21], [2, 12, 99]])
    positives = {0: {10, 99}, 1: {11, 99}, 2: {12, 99}}
    for mask, expect_zero in ((True, True), (False, False)):
        columns = embeddings()
        loss = InfoNCE(model=None, positives=positives, mask_known_positives=mask)
        loss.loss_from_embeddings(columns, labels)[0].backward()
        planted = columns[2].grad[2]
        assert bool((planted == 0).all()) is expect_zero
        assert (columns[2].grad[:2] != 0).any()  # the genuine negatives still get gradient


def test_a_batch_mates_positive_that_is_relevant_gets_no_gradient_from_that_query():
    # query 0 also has doc 11 (query 1's positive) as a known positive: column 1 of row 0 is masked.
    labels = torch.tensor([[0, 10], [1, 11], [2, 12]])
    candidates = labels[:, 1]
    targets = torch.arange(3)
    mask = known_positive_mask(labels[:, 0], candidates, {0: {10, 11}, 1: {11}, 2: {12}}, targets)
    assert mask.tolist() == [[False, True, False], [False, False, False], [False, False, False]]
    scores = torch.randn(3, 3, requires_grad=True)
    info_nce_from_scores(scores, targets, mask, 0.05)[0].backward()
    assert scores.grad[0, 1] == 0
    unmasked = scores.detach().clone().requires_grad_()
    info_nce_from_scores(unmasked, targets, None, 0.05)[0].backward()
    assert unmasked.grad[0, 1] != 0


def test_a_duplicate_of_the_querys_own_positive_is_masked_even_without_a_positives_table():
    labels = torch.tensor([[0, 10, 11], [1, 11, 10]])  # each query's positive is the other's hard negative
    mask = known_positive_mask(labels[:, 0], labels[:, 1:].T.reshape(-1), None, torch.arange(2))
    assert mask.tolist() == [[False, False, False, True], [False, False, True, False]]


def test_the_target_itself_is_never_masked():
    mask = known_positive_mask(torch.tensor([0, 1]), torch.tensor([10, 11]), PositivePairs({0: {10}, 1: {11}}), torch.arange(2))
    assert not mask.any()
    with pytest.raises(AssertionError):
        info_nce_from_scores(torch.zeros(2, 2), torch.arange(2), torch.eye(2, dtype=torch.bool), 0.05)


def test_symmetric_term_masks_other_queries_that_share_the_positive():
    # both queries are relevant to both positives: the doc->query softmax keeps only the own query.
    labels = torch.tensor([[0, 10], [1, 11]])
    positives = {0: {10, 11}, 1: {10, 11}}
    columns = embeddings(n_negatives=0, batch_size=2)
    loss, stats = InfoNCE(model=None, symmetric=True, positives=positives).loss_from_embeddings(columns, labels)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # one candidate per row in both directions
    assert stats["n_candidates"].item() == 1


def test_learnable_temperature_receives_a_gradient_and_is_a_loss_parameter():
    loss_fn = InfoNCE(model=None, temperature=0.05, learnable_temperature=True)
    assert any(p is loss_fn.log_temperature for p in loss_fn.parameters())
    loss, _ = loss_fn.loss_from_embeddings(embeddings(), torch.tensor([[0, 10, 20], [1, 11, 21], [2, 12, 22]]))
    loss.backward()
    assert loss_fn.log_temperature.grad is not None and loss_fn.log_temperature.grad != 0
    assert loss_fn.temperature == pytest.approx(0.05)
    assert loss_fn.get_config_dict()["learnable_temperature"] is True
    assert "1807.03748" in loss_fn.citation


def test_on_random_embeddings_the_loss_is_about_log_candidates_and_the_bound_about_zero():
    loss_fn = InfoNCE(model=None, temperature=1.0)
    columns = embeddings(n_negatives=1, batch_size=64, dim=2048)
    loss, stats = loss_fn.loss_from_embeddings(columns, None)
    loss_fn.record_stats(loss, stats)
    assert loss_fn.last_stats["n_candidates"] == 128
    assert loss.item() == pytest.approx(math.log(128), abs=0.05)
    assert loss_fn.last_stats["mi_lower_bound"] == pytest.approx(0.0, abs=0.05)
    assert set(loss_fn.consume_stats()) >= {"loss", "accuracy", "n_candidates", "mi_lower_bound", "temperature"}
    assert loss_fn.consume_stats() == {}


def test_masked_candidates_are_not_counted_as_candidates():
    labels = torch.tensor([[0, 10, 20], [1, 11, 21], [2, 12, 22]])
    _, stats = InfoNCE(model=None, positives={0: {10, 20, 11}}).loss_from_embeddings(embeddings(), labels)
    assert stats["n_candidates"].item() == pytest.approx((4 + 6 + 6) / 3)


def test_labels_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError, match="labels must be"):
        InfoNCE(model=None, positives={0: {1}}).loss_from_embeddings(embeddings(), torch.tensor([[0, 10], [1, 11], [2, 12]]))


@pytest.mark.parametrize("symmetric", [False, True])
def test_cached_info_nce_equals_info_nce_in_loss_and_parameter_gradients(tiny_model, symmetric):
    from finetune.losses.cached_info_nce import CachedInfoNCE

    tiny_model.eval()
    labels = ids(2)
    options = dict(symmetric=symmetric, positives={0: {100, 101}, 1: {101}, 2: {102}, 3: {103, 230}},
                   learnable_temperature=True)
    plain = InfoNCE(tiny_model, **options)
    expected = plain(batch(tiny_model, 2), labels)
    (expected * 0.5).backward()  # a gradient-accumulation factor must reach every gradient
    expected_grads, expected_t_grad = grads(tiny_model), plain.log_temperature.grad.clone()
    tiny_model.zero_grad()
    cached = CachedInfoNCE(tiny_model, mini_batch_size=3, **options)
    got = cached(batch(tiny_model, 2), labels)
    (got * 0.5).backward()
    assert abs(got.item() - expected.item()) < 1e-5
    for mine, other in zip(grads(tiny_model), expected_grads, strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached.loss.log_temperature.grad, expected_t_grad, rtol=1e-4, atol=1e-6)
    assert cached.last_stats["n_candidates"] < 12  # the planted known positives were masked
    assert cached.get_config_dict()["mini_batch_size"] == 3


@pytest.mark.parametrize("symmetric", [False, True])
def test_each_process_scores_its_rows_against_the_gathered_batch(monkeypatch, symmetric):
    """Simulated 2-process run: the mean of both ranks' losses is the single-process loss of the global batch."""
    import finetune.losses.info_nce as module

    halves = [embeddings(n_negatives=1, batch_size=3, seed=seed) for seed in (1, 2)]
    labels = [torch.tensor([[0, 10, 20], [1, 11, 21], [2, 12, 22]]), torch.tensor([[3, 13, 23], [4, 14, 10], [5, 15, 24]])]
    positives = {0: {10, 14}, 3: {13, 11}, 4: {14}, 5: {15, 22}}  # known positives planted across the two ranks
    loss_fn = InfoNCE(model=None, symmetric=symmetric, positives=positives)
    whole = [torch.cat([a, b]) for a, b in zip(*halves)]
    expected, expected_stats = loss_fn.loss_from_embeddings(whole, torch.cat(labels))

    column = {}
    views = []
    for rank in (0, 1):
        def gather(tensor, rank=rank):  # stand-in for all_gather: find which column/labels it is, cat both ranks
            key = column[id(tensor)]
            parts = [halves[r][key] if key != "labels" else labels[r] for r in (0, 1)]
            return torch.cat(parts)
        monkeypatch.setattr(module, "is_multi_process", lambda: True)
        monkeypatch.setattr(module, "world", lambda rank=rank: (rank, 2))
        monkeypatch.setattr(module, "gather_with_grad", gather)
        monkeypatch.setattr(module, "gather_no_grad", gather)
        column.clear()
        column.update({id(t): k for k, t in enumerate(halves[rank])} | {id(labels[rank]): "labels"})
        views.append(loss_fn.loss_from_embeddings(list(halves[rank]), labels[rank]))
    assert ((views[0][0] + views[1][0]) / 2).item() == pytest.approx(expected.item(), abs=1e-6)
    mean_candidates = (views[0][1]["n_candidates"] + views[1][1]["n_candidates"]) / 2
    assert mean_candidates.item() == pytest.approx(expected_stats["n_candidates"].item())
    assert expected_stats["n_candidates"].item() < 12  # the planted positives were masked
