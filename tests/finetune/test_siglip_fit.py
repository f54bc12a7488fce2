"""SigLIP's bias fitted on the first batch (--siglip-init fit, the default): the minimiser of the loss in b, found once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from finetune.config import FinetuneConfig
from finetune.losses.siglip import SigLIP, fitted_bias
from tests.finetune.test_loss_family import LABELS, POSITIVES, embeddings, reference_mask, reference_scores, softplus


def reference_loss(b: float, scores: np.ndarray, scale: float, mask: np.ndarray) -> float:
    """The paper's loss written out in numpy: every unmasked pair a sigmoid decision, divided by B."""
    logits = scale * scores + b
    signs = 2 * np.eye(*scores.shape) - 1
    return float(np.where(mask, 0.0, softplus(-signs * logits)).sum() / len(scores))


def five_row_scores(with_mask: bool) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of a five-row batch with three document columns, and its false-negative mask (all False without)."""
    columns = embeddings(n_columns=4, batch_size=5, seed=3)
    labels = torch.tensor([[0, 10, 20, 40], [1, 11, 21, 41], [2, 12, 10, 42], [3, 13, 23, 43], [4, 14, 24, 44]])
    scores = reference_scores(columns)
    return scores, reference_mask(labels, POSITIVES) if with_mask else np.zeros_like(scores, dtype=bool)


@pytest.mark.parametrize("scale, with_mask", [(10.0, True), (20.0, True), (20.0, False), (50.0, True)])
def test_fitted_bias_is_the_minimiser_scipy_finds(scale, with_mask):
    scores, mask = five_row_scores(with_mask)
    expected = minimize_scalar(reference_loss, args=(scores, scale, mask), bounds=(-scale - 40, scale + 40),
                               method="bounded", options={"xatol": 1e-9}).x
    got = fitted_bias(torch.from_numpy(scores), torch.arange(len(scores)), torch.from_numpy(mask) if with_mask else None,
                      scale)
    assert got == pytest.approx(expected, abs=1e-4)


def test_the_first_batch_fits_the_bias_once_and_its_gradient_in_b_is_zero_there():
    loss_fn = SigLIP(None, init_scale=20.0, init_bias=None, positives=POSITIVES)
    columns = embeddings()
    loss, stats = loss_fn.loss_from_embeddings(columns, LABELS)
    mask = reference_mask(LABELS, POSITIVES)
    fitted = fitted_bias(torch.from_numpy(reference_scores(columns)), torch.arange(3), torch.from_numpy(mask), 20.0)
    assert loss_fn.bias == pytest.approx(fitted, abs=1e-5) == loss_fn.fitted_init_bias
    assert stats["bias"].item() == pytest.approx(fitted, abs=1e-5)
    assert loss.item() == pytest.approx(reference_loss(fitted, reference_scores(columns), 20.0, mask), rel=1e-5)
    loss.backward()
    assert abs(loss_fn.logit_bias.grad.item()) < 1e-4  # pull on positives = push on negatives
    assert loss_fn.logit_scale.grad.item() != 0
    with torch.no_grad():
        loss_fn.logit_bias.sub_(1.0)  # as an optimizer step would move it
    loss_fn.loss_from_embeddings(embeddings(seed=1), LABELS)
    assert loss_fn.bias == pytest.approx(fitted - 1.0)  # not fitted again on the second batch
    assert loss_fn.get_config_dict()["init_bias"] == "fit on the first batch"
    assert loss_fn.get_config_dict()["fitted_init_bias"] == pytest.approx(fitted, abs=1e-5)


def test_masked_candidates_do_not_move_the_fitted_bias():
    """A known positive among the negatives would pull the bias up if it counted; it is left out."""
    columns = embeddings()
    scores = torch.from_numpy(reference_scores(columns))
    mask = torch.from_numpy(reference_mask(LABELS, POSITIVES))
    with_mask = fitted_bias(scores, torch.arange(3), mask, 20.0)
    assert with_mask != pytest.approx(fitted_bias(scores, torch.arange(3), None, 20.0), abs=1e-3)
    planted = scores.clone()
    planted[mask] = 1.0  # masked candidates made as similar as can be: no effect when masked
    assert fitted_bias(planted, torch.arange(3), mask, 20.0) == pytest.approx(with_mask, abs=1e-9)


def test_the_class_keeps_the_papers_start_unless_asked():
    loss_fn = SigLIP(None, positives=POSITIVES)
    loss_fn.loss_from_embeddings(embeddings(), LABELS)
    assert (loss_fn.scale, loss_fn.bias) == (pytest.approx(10.0), -10.0)


def test_config_builds_the_fitted_start_by_default_and_the_papers_on_request():
    from finetune.modes import FullSetup
    from retrieval.errors import UsageError

    setup = FullSetup.__new__(FullSetup)  # only _loss is exercised: no dataset, no model download
    setup.model, setup.positives = None, POSITIVES
    config = FinetuneConfig(mode="full", loss="siglip", temperature=0.05)
    config.validate()
    built = setup._loss(config)
    assert built.scale == pytest.approx(20.0) and built.init_bias is None
    paper = setup._loss(FinetuneConfig(mode="full", loss="siglip", siglip_init="paper"))
    assert (paper.scale, paper.init_bias) == (pytest.approx(10.0), -10.0)
    with pytest.raises(UsageError, match="'fit' or 'paper'"):
        FinetuneConfig(mode="full", loss="siglip", siglip_init="zero").validate()


def test_the_fingerprint_keeps_older_siglip_runs_and_ignores_the_knob_for_other_losses():
    """Runs from before the flag trained the paper's start: that value, not the new default, hashes as absent."""
    import dataclasses
    import hashlib
    import json

    def legacy(config: FinetuneConfig) -> str:  # the hash as computed before the field existed
        data = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("test_split", "batch_size_encode")}
        for f in dataclasses.fields(config):
            if f.name in ("siglip_init", "nce_bias") or (f.metadata.get("fingerprint_default") is True and data[f.name] == f.default):
                data.pop(f.name)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    paper = FinetuneConfig(loss="siglip", siglip_init="paper")
    assert paper.fingerprint() == legacy(paper)
    assert FinetuneConfig(loss="siglip").fingerprint() != paper.fingerprint()
    for loss in ("infonce", "nce", "triplet"):
        assert FinetuneConfig(loss=loss, siglip_init="paper").fingerprint() == FinetuneConfig(loss=loss).fingerprint()


def test_a_batch_without_negatives_is_refused():
    with pytest.raises(ValueError, match="no unmasked negative"):
        fitted_bias(torch.tensor([[0.5]]), torch.tensor([0]), None, 10.0)


def test_the_flag_comes_from_the_config_field():
    import argparse

    from finetune.config import add_to_parser, from_args

    parser = argparse.ArgumentParser()
    add_to_parser(parser)
    assert from_args(parser.parse_args(["--loss", "siglip", "--siglip-init", "paper"])).siglip_init == "paper"
    assert from_args(parser.parse_args([])).siglip_init == "fit"
    with pytest.raises(SystemExit):
        parser.parse_args(["--siglip-init", "zero"])
