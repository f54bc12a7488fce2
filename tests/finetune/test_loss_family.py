"""NCE, SigLIP and triplet: each equals an independent formula, and masked candidates get zero gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finetune.config import FinetuneConfig
from finetune.losses.info_nce import InfoNCE
from finetune.losses.nce import NCE
from finetune.losses.siglip import SigLIP
from finetune.losses.triplet import Triplet

# query 0 also has doc 11 (query 1's positive) and doc 20 (its own mined negative) as known positives;
# query 2's mined negative is doc 10: query 0's positive (a duplicate, so masked for query 0), not relevant to query 2.
LABELS = torch.tensor([[0, 10, 20], [1, 11, 21], [2, 12, 10]])
POSITIVES = {0: {10, 11, 20}, 1: {11}, 2: {12}}


def embeddings(n_columns: int = 3, batch_size: int = 3, dim: int = 8, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch_size, dim, generator=generator, requires_grad=True) for _ in range(n_columns)]


def reference_scores(columns: list[torch.Tensor]) -> np.ndarray:
    """float64 cosine of every query against every document column, column-major."""
    unit = [c.detach().double().numpy() for c in columns]
    unit = [u / np.linalg.norm(u, axis=1, keepdims=True) for u in unit]
    return unit[0] @ np.concatenate(unit[1:]).T


def reference_mask(labels: torch.Tensor, positives: dict[int, set[int]]) -> np.ndarray:
    """True where candidate j is, for query i, a known positive or a copy of its own positive (j != i)."""
    candidates = labels[:, 1:].T.reshape(-1).tolist()
    mask = np.zeros((len(labels), len(candidates)), dtype=bool)
    for i, query in enumerate(labels[:, 0].tolist()):
        for j, doc in enumerate(candidates):
            mask[i, j] = j != i and (doc in positives.get(query, set()) or doc == candidates[i])
    return mask


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def test_reference_mask_has_the_planted_cases():
    assert np.argwhere(reference_mask(LABELS, POSITIVES)).tolist() == [[0, 1], [0, 3], [0, 5]]


@pytest.mark.parametrize("with_labels", [True, False])
def test_nce_equals_its_formula(with_labels):
    columns, tau = embeddings(), 0.1
    loss, stats = NCE(None, temperature=tau, positives=POSITIVES).loss_from_embeddings(columns, LABELS if with_labels else None)
    logits = reference_scores(columns) / tau
    mask = reference_mask(LABELS, POSITIVES) if with_labels else np.zeros_like(logits, dtype=bool)
    rows = []
    for i in range(len(logits)):
        negatives = [softplus(logits[i, j]) for j in range(logits.shape[1]) if j != i and not mask[i, j]]
        rows.append(softplus(-logits[i, i]) + np.mean(negatives))
    np.testing.assert_allclose(loss.item(), np.mean(rows), rtol=1e-5)
    assert stats["n_candidates"].item() == pytest.approx(6 - mask.sum() / 3)


@pytest.mark.parametrize("with_labels", [True, False])
def test_siglip_equals_its_formula_from_the_papers_initialisation(with_labels):
    columns = embeddings()
    loss, stats = SigLIP(None, positives=POSITIVES).loss_from_embeddings(columns, LABELS if with_labels else None)
    logits = 10.0 * reference_scores(columns) - 10.0
    mask = reference_mask(LABELS, POSITIVES) if with_labels else np.zeros_like(logits, dtype=bool)
    signs = 2 * np.eye(*logits.shape) - 1
    expected = np.where(mask, 0.0, softplus(-signs * logits)).sum() / len(logits)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    assert stats["scale"].item() == pytest.approx(10.0) and stats["bias"].item() == pytest.approx(-10.0)


def test_siglip_scale_and_bias_are_parameters_that_learn():
    loss_fn = SigLIP(None, positives=POSITIVES)
    assert {name for name, _ in loss_fn.named_parameters()} == {"logit_scale", "logit_bias"}
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(10)) and loss_fn.logit_bias.item() == -10.0
    loss_fn.loss_from_embeddings(embeddings(), LABELS)[0].backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad != 0
    assert loss_fn.logit_bias.grad is not None and loss_fn.logit_bias.grad != 0
    assert loss_fn.get_config_dict()["init_bias"] == -10.0 and "2303.15343" in loss_fn.citation


@pytest.mark.parametrize("margin", [0.1, 0.3, 1.0])
def test_triplet_equals_sentence_transformers_cosine_triplet_loss(margin):
    from sentence_transformers.sentence_transformer.losses import TripletDistanceMetric, TripletLoss

    theirs_fn = TripletLoss(None, distance_metric=TripletDistanceMetric.COSINE, triplet_margin=margin)
    mine, theirs = embeddings(batch_size=6, seed=1), embeddings(batch_size=6, seed=1)
    ours = Triplet(None, margin=margin).loss_from_embeddings(mine, None)[0]
    expected = theirs_fn.compute_loss_from_embeddings(theirs, None)
    ours.backward()
    expected.backward()
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_triplet_drops_a_mined_negative_that_is_a_known_positive():
    columns = embeddings()
    loss, stats = Triplet(None, margin=0.2, positives=POSITIVES).loss_from_embeddings(columns, LABELS)
    distance = 1 - reference_scores(columns)
    hinge = [max(0.0, distance[i, i] - distance[i, 3 + i] + 0.2) for i in (1, 2)]  # row 0's only triplet is masked
    np.testing.assert_allclose(loss.item(), np.mean(hinge), rtol=1e-5)
    assert stats["triplets_per_row"].item() == pytest.approx(2 / 3)
    loss.backward()
    assert bool((columns[2].grad[0] == 0).all()) and (columns[2].grad[1:] != 0).any()


def test_triplet_without_negative_columns_uses_the_other_rows_positives():
    columns = embeddings(n_columns=2, batch_size=4)
    loss, _ = Triplet(None, margin=0.5).loss_from_embeddings(columns, None)
    distance = 1 - reference_scores(columns)
    hinge = [max(0.0, distance[i, i] - distance[i, j] + 0.5) for i in range(4) for j in range(4) if i != j]
    np.testing.assert_allclose(loss.item(), np.mean(hinge), rtol=1e-5)


def capture_scores(monkeypatch, module) -> list[torch.Tensor]:
    """Every score matrix ``module.cosine_scores`` returns from now on, kept with its gradient."""
    captured = []

    def keep(a, b, real=module.cosine_scores):
        scores = real(a, b)
        scores.retain_grad()
        captured.append(scores)
        return scores

    monkeypatch.setattr(module, "cosine_scores", keep)
    return captured


LOSSES = {
    "infonce": lambda: InfoNCE(None, positives=POSITIVES),
    "nce": lambda: NCE(None, positives=POSITIVES),
    "nce-fit": lambda: NCE(None, positives=POSITIVES, fit_bias=True),  # the command line's NCE: a fitted offset
    "siglip": lambda: SigLIP(None, positives=POSITIVES),
    "triplet": lambda: Triplet(None, margin=2.0, positives=POSITIVES),  # every unmasked triplet active
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_masked_candidates_get_exactly_zero_gradient(monkeypatch, name):
    import importlib

    module = importlib.import_module(f"finetune.losses.{'info_nce' if name == 'infonce' else name.split('-')[0]}")
    captured = capture_scores(monkeypatch, module)
    loss_fn = LOSSES[name]()
    loss_fn.loss_from_embeddings(embeddings(), LABELS)[0].backward()
    grad = captured[0].grad
    assert grad[0, 1] == 0  # query 1's positive, known relevant to query 0
    assert grad[0, 3] == 0  # query 0's own mined negative, known relevant to it
    assert grad[0, 5] == 0  # a copy of query 0's own positive (query 2's mined negative)
    assert grad[2, 5] != 0  # the same document is a true negative of query 2
    if name != "triplet":  # the triplet loss only ever looks at a row's own negatives
        assert grad[0, 0] != 0 and grad[0, 2] != 0


def test_triplet_masks_a_known_positive_among_in_batch_negatives(monkeypatch):
    """Without negative columns a row's triplets use the other rows' positives: the masked one gets no gradient."""
    import finetune.losses.triplet as module

    captured = capture_scores(monkeypatch, module)
    loss, stats = LOSSES["triplet"]().loss_from_embeddings(embeddings(n_columns=2), LABELS[:, :2])
    loss.backward()
    grad = captured[0].grad
    assert grad[0, 1] == 0  # query 1's positive (doc 11) is known relevant to query 0: no triplet
    assert grad[0, 2] != 0 and grad[1, 0] != 0 and grad[2, 1] != 0  # margin 2: every unmasked triplet is active
    assert stats["triplets_per_row"].item() == pytest.approx(5 / 3)


@pytest.mark.parametrize("loss", ["infonce", "nce", "siglip", "triplet"])
def test_config_accepts_every_loss_in_mode_full_and_builds_it(loss):
    from finetune.modes import FullSetup

    config = FinetuneConfig(mode="full", loss=loss)
    config.validate()
    setup = FullSetup.__new__(FullSetup)  # only _loss is exercised: no dataset, no model download
    setup.model, setup.positives = None, POSITIVES
    built = setup._loss(config)
    assert type(built).__name__ == {"infonce": "InfoNCE", "nce": "NCE", "siglip": "SigLIP", "triplet": "Triplet"}[loss]
    if loss == "triplet":
        assert built.margin == config.triplet_margin == 0.1


@pytest.mark.parametrize("settings, message", [
    (dict(loss="nce", mode="query"), "needs --mode full"),
    (dict(loss="siglip", gradient_cache=True), "--gradient-cache"),
    (dict(loss="nce", learnable_temperature=True), "--learnable-temperature"),
    (dict(loss="triplet", num_negatives=0), "--num-negatives"),
    (dict(loss="triplet", triplet_margin=-0.1), "--triplet-margin"),
    (dict(loss="hinge"), "--loss must be one of"),
])
def test_config_refuses_combinations_the_losses_do_not_support(settings, message):
    from retrieval.errors import UsageError

    with pytest.raises(UsageError, match=message):
        FinetuneConfig(**{"mode": "full", **settings}).validate()


def test_every_field_with_choices_refuses_a_value_outside_them_naming_its_flag():
    """A config file or the Python API bypasses argparse's choices; validate() checks them all."""
    import dataclasses

    from retrieval.errors import UsageError

    fields = [f for f in dataclasses.fields(FinetuneConfig) if f.metadata.get("choices")]
    assert {"mode", "loss", "precision", "starved", "siglip_init", "nce_bias"} <= {f.name for f in fields}
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        with pytest.raises(UsageError, match=f"^{flag} must be .*'{f.metadata['choices'][-1]}'.*, not 'nonsense'$"):
            FinetuneConfig(**{f.name: "nonsense"}).validate()
    FinetuneConfig().validate()


def test_the_cli_flags_come_from_the_new_fields():
    import argparse

    from finetune.config import add_to_parser, from_args

    parser = argparse.ArgumentParser()
    add_to_parser(parser)
    config = from_args(parser.parse_args(["--loss", "triplet", "--triplet-margin", "0.2"]))
    assert (config.loss, config.triplet_margin) == ("triplet", 0.2)
    assert from_args(parser.parse_args([])).loss == "infonce"


@pytest.mark.parametrize("command", [["tune", "--data", "scifact"], ["finetune", "--data", "scifact", "--out", "o"]])
def test_retrieval_tune_and_finetune_parse_the_family_flags_into_a_valid_config(command):
    from cli import build_parser
    from finetune.config import from_args

    flags = ["--loss", "infonce", "--queue-size", "64", "--momentum", "0.9", "--mode", "full"]
    config = from_args(build_parser().parse_args(command + flags))
    config.validate()
    assert (config.loss, config.queue_size, config.momentum) == ("infonce", 64, 0.9)
    config = from_args(build_parser().parse_args(command + ["--loss", "nce", "--matryoshka-dims", "384,64"]))
    config.validate()
    assert (config.loss, config.matryoshka_dims, config.nce_bias) == ("nce", "384,64", "fit")


def test_each_loss_trains_one_step_through_the_sentence_transformers_trainer(tiny_model, tmp_path):
    """The trainer hands over the id labels, and puts SigLIP's own parameters in its optimizer."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    rows = Dataset.from_dict({
        "query": ["cats purr", "dogs bark", "the sun", "the moon"],
        "positive": ["cats sleep on warm windows", "dogs fetch sticks", "a star of hot plasma", "orbits the earth"],
        "negative_1": ["rain falls from clouds", "trees grow", "cold winter", "fish swim"],
        "label": [[q, 100 + q, 200 + q] for q in range(4)],
    })
    positives = {0: {100, 201}}  # query 1's mined negative is relevant to query 0
    for loss in (InfoNCE(tiny_model, positives=positives), NCE(tiny_model, positives=positives),
                 SigLIP(tiny_model, positives=positives), Triplet(tiny_model, margin=0.5, positives=positives)):
        before = [p.detach().clone() for p in tiny_model.parameters()]
        own = [p.detach().clone() for p in loss.parameters(recurse=False)]  # SigLIP's t' and b
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / type(loss).__name__), max_steps=1, per_device_train_batch_size=4,
            learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no")
        SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=rows, loss=loss).train()
        assert math.isfinite(loss.last_stats["loss"]) and loss.last_stats["accuracy"] >= 0
        assert any(not torch.equal(a, p) for a, p in zip(before, tiny_model.parameters())), type(loss).__name__
        assert all(not torch.equal(a, p) for a, p in zip(own, loss.parameters(recurse=False)))
        assert len(own) == (2 if isinstance(loss, SigLIP) else 0)
