"""QueueInfoNCE: a FIFO of earlier documents as extra negatives, masked like in-batch known positives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finetune.config import FinetuneConfig
from finetune.losses.info_nce import InfoNCE
from finetune.loss_callbacks import MomentumUpdate, find_queue_losses, trainer_callbacks
from finetune.losses.embedding_queue import EmbeddingQueue
from finetune.losses.queue import QueueInfoNCE
from retrieval.errors import UsageError

LABELS = torch.tensor([[0, 10, 20], [1, 11, 21], [2, 12, 22]])  # all documents distinct
POSITIVES = {0: {10}, 1: {11}, 2: {12}}


def embeddings(n_columns: int = 3, batch_size: int = 3, dim: int = 8, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, dim, generator=generator, requires_grad=True) for _ in range(n_columns)]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_loss(columns, queued: np.ndarray, queued_ids: list[int], labels, positives, tau: float) -> float:
    """float64 InfoNCE of each query over batch (column-major) + queue candidates, known positives left out."""
    q = unit(columns[0].detach().double().numpy())
    docs = unit(np.concatenate([c.detach().double().numpy() for c in columns[1:]] + [queued.astype(np.float64)]))
    candidate_ids = labels[:, 1:].T.reshape(-1).tolist() + list(queued_ids)
    total = 0.0
    for i, query in enumerate(labels[:, 0].tolist()):
        own = candidate_ids[i]
        logits = [float(q[i] @ docs[j]) / tau for j, doc in enumerate(candidate_ids)
                  if j == i or not (doc == own or doc in positives.get(query, set()))]
        total += -(float(q[i] @ docs[i]) / tau - np.logaddexp.reduce(logits))
    return total / len(q)


# --- the queue itself ---------------------------------------------------------------------------------------

def test_queue_is_fifo_and_never_holds_more_than_its_size():
    queue = EmbeddingQueue(5)
    assert len(queue) == 0
    for block in range(4):  # blocks of 2 rows, row value = its global number
        rows = torch.arange(2 * block, 2 * block + 2, dtype=torch.float32)
        queue.push(rows.reshape(-1, 1).repeat(1, 3), rows.long() + 100)
        assert len(queue) == min(5, 2 * (block + 1))
    vectors, ids = queue.contents(torch.device("cpu"), 3)
    assert vectors[:, 0].tolist() == [3, 4, 5, 6, 7]  # the oldest three dropped, order kept (oldest first)
    assert ids.tolist() == [103, 104, 105, 106, 107]
    queue.push(torch.arange(7, dtype=torch.float32).reshape(-1, 1).repeat(1, 3) + 50, torch.arange(7))
    assert queue.contents(torch.device("cpu"), 3)[1].tolist() == [2, 3, 4, 5, 6]  # a block larger than the queue


def test_queue_stores_detached_float_rows_and_refuses_another_width():
    queue = EmbeddingQueue(4)
    rows = torch.randn(2, 3, requires_grad=True)
    queue.push(rows.to(torch.bfloat16), torch.tensor([1, 2]))
    vectors, _ = queue.contents(torch.device("cpu"), 3)
    assert not vectors.requires_grad and vectors.dtype == torch.float32
    with pytest.raises(ValueError, match="width"):
        queue.push(torch.randn(1, 4), torch.tensor([3]))
    with pytest.raises(ValueError):
        EmbeddingQueue(0)


# --- the loss --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("symmetric", [False, True])
def test_with_an_empty_queue_the_loss_and_gradients_are_plain_infonce(symmetric):
    positives = {0: {10, 21}, 1: {11}, 2: {12, 10}}  # planted in-batch known positives
    ours_columns, theirs_columns = embeddings(), embeddings()
    ours, ours_stats = QueueInfoNCE(None, queue_size=16, symmetric=symmetric, positives=positives).loss_from_embeddings(
        ours_columns, LABELS)
    theirs, theirs_stats = InfoNCE(None, symmetric=symmetric, positives=positives).loss_from_embeddings(
        theirs_columns, LABELS)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert ours_stats["n_candidates"].item() == theirs_stats["n_candidates"].item()
    assert ours_stats["queue_rows"].item() == 0
    ours.backward()
    theirs.backward()
    for mine, other in zip(ours_columns, theirs_columns, strict=True):
        torch.testing.assert_close(mine.grad, other.grad)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_with_a_queue_the_loss_equals_infonce_over_batch_and_queued_candidates(tau):
    loss_fn = QueueInfoNCE(None, queue_size=5, temperature=tau, positives=POSITIVES)
    old = embeddings(seed=1)
    loss_fn.enqueue([c.detach() for c in old[1:]], LABELS + 100)  # 6 rows into a queue of 5: the first is dropped
    queued, queued_ids = loss_fn.queue_for(8).contents(torch.device("cpu"), 8)
    assert queued_ids.tolist() == [111, 112, 120, 121, 122]  # column-major, oldest first
    columns = embeddings()
    loss, stats = loss_fn.loss_from_embeddings(columns, LABELS)
    expected = reference_loss(columns, queued.numpy(), queued_ids.tolist(), LABELS, POSITIVES, tau)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    assert stats["n_candidates"].item() == 6 + 5 and stats["queue_rows"].item() == 5


def test_a_queued_known_positive_is_masked_out_of_the_softmax():
    # queued rows: doc 30 (a known positive of query 0 per the table), doc 11 (query 1's own positive, queued
    # from an earlier batch) and doc 40 (relevant to nobody).
    positives = {0: {10, 30}, 1: {11}, 2: {12}}
    queued, queued_ids = torch.randn(3, 8, generator=torch.Generator().manual_seed(5)), torch.tensor([30, 11, 40])
    loss_fn = QueueInfoNCE(None, queue_size=8, positives=positives)
    loss_fn.queue_for(8).push(queued, queued_ids)
    columns = embeddings()
    loss, stats = loss_fn.loss_from_embeddings(columns, LABELS)
    np.testing.assert_allclose(loss.item(), reference_loss(columns, queued.numpy(), [30, 11, 40], LABELS, positives, 0.05),
                               rtol=1e-5)
    assert stats["n_candidates"].item() == pytest.approx(6 + 3 - 2 / 3)  # rows 0 and 1 lose one queued candidate each
    off = QueueInfoNCE(None, queue_size=8, mask_known_positives=False)
    off.queue_for(8).push(queued, queued_ids)
    assert off.loss_from_embeddings(columns, LABELS)[0].item() != pytest.approx(loss.item(), abs=1e-4)

    # query 0 alone: whatever the masked row holds, the loss is the one of a queue without it
    single = [c[:1] for c in columns]
    without = QueueInfoNCE(None, queue_size=8, positives=positives)
    without.queue_for(8).push(queued[1:], queued_ids[1:])
    expected = without.loss_from_embeddings(single, LABELS[:1])[0].item()
    for planted in (queued[0], single[0][0].detach(), -single[0][0].detach()):  # even a copy of the query itself
        with_it = QueueInfoNCE(None, queue_size=8, positives=positives)
        with_it.queue_for(8).push(torch.cat([planted.reshape(1, -1), queued[1:]]), queued_ids)
        assert with_it.loss_from_embeddings(single, LABELS[:1])[0].item() == pytest.approx(expected, abs=1e-6)


def test_a_masked_queued_candidate_gets_zero_gradient_and_the_others_do_not():
    positives = {0: {10, 30}, 1: {11}, 2: {12}}
    loss_fn = QueueInfoNCE(None, queue_size=8, positives=positives)
    loss_fn.queue_for(8).push(torch.randn(2, 8), torch.tensor([30, 40]))
    queue = loss_fn.queue_for(8)
    queue.vectors = queue.vectors.clone().requires_grad_()  # a leaf standing in for the stored rows, to read their gradient
    single = [c[:1] for c in embeddings()]  # query 0: doc 30 is its known positive (masked), doc 40 a genuine negative
    loss, _ = loss_fn.loss_from_embeddings(single, LABELS[:1])
    loss.backward()
    assert bool((queue.vectors.grad[0] == 0).all())
    assert bool((queue.vectors.grad[1] != 0).any())


def test_forward_enqueues_after_the_loss_and_only_in_training(tiny_model):
    from tests.finetune.test_info_nce import batch, ids

    tiny_model.train()
    loss_fn = QueueInfoNCE(tiny_model, queue_size=10)
    torch.manual_seed(0)
    first = loss_fn(batch(tiny_model, 2), ids(2))
    assert loss_fn.last_stats["queue_rows"] == 0  # the batch did not see its own documents twice
    assert len(loss_fn.queue_for(32)) == 10  # 4 x 3 documents, capped at 10
    assert loss_fn.queue_for(32).ids.tolist() == ids(2)[:, 1:].T.reshape(-1).tolist()[-10:]
    assert first.requires_grad
    loss_fn(batch(tiny_model, 2), ids(2))
    assert loss_fn.last_stats["queue_rows"] == 10
    # the same documents come back: the queue kept 102, 103 (positives of queries 2, 3) and the 8 negatives;
    # each query's queued copy of its own positive is masked (queries 2 and 3 lose one), the rest are negatives
    assert loss_fn.queue_for(32).ids.tolist()[:2] == [102, 103]
    assert loss_fn.last_stats["n_candidates"] == pytest.approx(12 + 10 - 2 / 4)
    tiny_model.eval()
    before = loss_fn.queue_for(32).ids.clone()
    loss_fn(batch(tiny_model, 2), ids(2))
    assert torch.equal(loss_fn.queue_for(32).ids, before)


def test_momentum_encoder_follows_the_online_weights_and_embeds_the_queue(tiny_model):
    from tests.finetune.test_info_nce import batch, ids

    loss_fn = QueueInfoNCE(tiny_model, queue_size=64, momentum=0.9)
    key = loss_fn.momentum_encoder
    assert key is not tiny_model and not any(p.requires_grad for p in key.parameters())
    assert all(p is not k for p in loss_fn.parameters() for k in key.parameters())  # not given to the optimizer
    online, initial = next(tiny_model.parameters()), next(key.parameters()).detach().clone()
    with torch.no_grad():
        online.add_(1.0)
    loss_fn.momentum_update()
    torch.testing.assert_close(next(key.parameters()), 0.9 * initial + 0.1 * online.detach())
    loss_fn.sync_momentum_encoder()
    torch.testing.assert_close(next(key.parameters()), online.detach())

    with torch.no_grad():  # online and momentum encoders now differ: the queue must hold the momentum one's vectors
        for parameter in tiny_model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    tiny_model.train()
    for module in tiny_model.modules():  # no dropout, so both encoders are deterministic
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for module in key.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    features = batch(tiny_model, 1)
    loss_fn(features, ids(1))
    queued = loss_fn.queue_for(32).vectors
    with torch.no_grad():
        expected = torch.cat([key(f)["sentence_embedding"] for f in batch(tiny_model, 1)[1:]])
        online_docs = torch.cat([tiny_model(f)["sentence_embedding"] for f in batch(tiny_model, 1)[1:]])
    torch.testing.assert_close(queued, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(queued, online_docs, atol=1e-3)


def test_trainer_callbacks_find_the_queue_inside_a_wrapper(tiny_model):
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    plain = QueueInfoNCE(tiny_model, queue_size=8)
    assert trainer_callbacks(plain) == []
    with_momentum = QueueInfoNCE(tiny_model, queue_size=8, momentum=0.99)
    wrapped = MatryoshkaLoss(tiny_model, with_momentum, [32, 16])
    assert find_queue_losses(wrapped) == [with_momentum]
    callbacks = trainer_callbacks(wrapped)
    assert len(callbacks) == 1 and isinstance(callbacks[0], MomentumUpdate)
    with_momentum.queue_for(32).push(torch.randn(2, 32), torch.tensor([1, 2]))
    callbacks[0].on_train_begin(None, None, None)
    assert len(with_momentum.queue_for(32)) == 0


def test_under_matryoshka_each_width_has_its_own_queue(tiny_model):
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    from tests.finetune.test_info_nce import batch, ids

    tiny_model.train()
    inner = QueueInfoNCE(tiny_model, queue_size=100)
    loss = MatryoshkaLoss(tiny_model, inner, [32, 16, 8])
    loss(batch(tiny_model, 1), ids(1))
    assert sorted(inner.queues) == [8, 16, 32] and all(len(q) == 8 for q in inner.queues.values())
    value = loss(batch(tiny_model, 1), ids(1))
    assert math.isfinite(value.item()) and inner.last_stats["queue_rows"] == 8
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())


def test_config_flags_of_the_queue():
    assert FinetuneConfig(queue_size=128).queue_size == 128
    FinetuneConfig(queue_size=128, momentum=0.999).validate()
    for bad, message in ((dict(queue_size=-1), "--queue-size"), (dict(momentum=0.5), "needs --queue-size"),
                         (dict(queue_size=8, momentum=1.0), "--momentum"),
                         (dict(queue_size=8, loss="nce"), "--loss infonce"),
                         (dict(queue_size=8, mode="query"), "--mode full"),
                         (dict(queue_size=8, gradient_cache=True), "--gradient-cache")):
        with pytest.raises(UsageError, match=message):
            FinetuneConfig(**bad).validate()


def test_the_new_flags_leave_the_fingerprint_of_older_settings_alone():
    import dataclasses
    import hashlib
    import json

    config = FinetuneConfig()
    # added after runs existed
    later = ("queue_size", "momentum", "matryoshka_dims", "loss", "triplet_margin", "starved", "corpus_negatives",
             "lora_rank", "lora_alpha", "hidden_dropout", "siglip_init", "nce_bias")
    data = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("test_split", "batch_size_encode", *later)}
    assert config.fingerprint() == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    for changed in (dict(queue_size=64), dict(loss="nce"), dict(starved="drop"), dict(triplet_margin=0.3),
                    dict(lora_rank=8), dict(lora_alpha=4.0), dict(hidden_dropout=0.0),
                    dict(loss="siglip", siglip_init="fit"), dict(loss="siglip"), dict(loss="nce", nce_bias="none")):
        assert FinetuneConfig(**changed).fingerprint() != config.fingerprint(), changed


def test_full_setup_builds_the_queue_loss(tiny_model, monkeypatch):
    from finetune.modes import FullSetup

    setup = FullSetup.__new__(FullSetup)
    setup.model, setup.positives = tiny_model, POSITIVES
    loss = setup._loss(FinetuneConfig(queue_size=32, temperature=0.1))
    assert isinstance(loss, QueueInfoNCE) and loss.queue_size == 32 and loss.temperature == pytest.approx(0.1)
    assert loss.get_config_dict()["queue_size"] == 32 and "1911.05722" in loss.citation
    assert type(setup._loss(FinetuneConfig())) is InfoNCE
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="single-process"):
        setup._loss(FinetuneConfig(queue_size=32))


def test_full_mode_trains_with_a_momentum_queue(tiny_model_path, beir_dir, tmp_path, monkeypatch):
    from finetune.train import finetune
    from retrieval.data import load_beir

    updates = []
    original = QueueInfoNCE.momentum_update
    monkeypatch.setattr(QueueInfoNCE, "momentum_update", lambda self: (updates.append(1), original(self)))

    config = FinetuneConfig(base=str(tiny_model_path), mode="full", epochs=1, batch_size=4, dev_fraction=0.25,
                            learning_rate=1e-3, precision="fp32", batch_size_encode=16, interpolate="none",
                            test_split="", queue_size=16, momentum=0.9)
    result = finetune(load_beir(beir_dir), config, tmp_path / "out")
    rows = [row for row in result.train_log if "queue_rows" in row]
    assert rows and max(row["queue_rows"] for row in rows) > 0
    assert len(updates) == result.train_log[-1]["step"] > 0  # one momentum update per optimizer step


def test_the_cli_flags_come_from_the_new_fields():
    import argparse

    from finetune.config import add_to_parser, from_args

    parser = argparse.ArgumentParser()
    add_to_parser(parser)
    config = from_args(parser.parse_args(["--queue-size", "4096", "--momentum", "0.999"]))
    assert (config.queue_size, config.momentum) == (4096, 0.999)
    config = from_args(parser.parse_args(["--queue-size", "64", "--matryoshka-dims", "32,16"]))
    assert config.parsed_matryoshka_dims() == [32, 16]
    defaults = from_args(parser.parse_args([]))
    assert (defaults.queue_size, defaults.momentum, defaults.matryoshka_dims) == (0, 0.0, "")
