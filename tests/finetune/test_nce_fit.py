"""NCE's learnt offset (--nce-bias fit, the default of --loss nce): the minimiser of the loss in c, fitted once, learnt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from finetune.config import FinetuneConfig
from finetune.losses.nce import NCE, nce_from_scores
from finetune.losses.siglip import fitted_bias
from tests.finetune.test_loss_family import LABELS, POSITIVES, embeddings, reference_mask, reference_scores, softplus
from tests.finetune.test_siglip_fit import five_row_scores


def reference_loss(c: float, scores: np.ndarray, tau: float, mask: np.ndarray) -> float:
    """NCE written out in numpy: the positive's term plus the mean of the unmasked negatives' terms, mean over rows."""
    logits = scores / tau + c
    rows = []
    for i in range(len(logits)):
        negatives = [softplus(logits[i, j]) for j in range(logits.shape[1]) if j != i and not mask[i, j]]
        rows.append(softplus(-logits[i, i]) + np.mean(negatives))
    return float(np.mean(rows))


@pytest.mark.parametrize("tau, with_mask", [(0.05, True), (0.05, False), (0.1, True), (0.02, True)])
def test_the_fitted_offset_is_the_minimiser_scipy_finds(tau, with_mask):
    scores, mask = five_row_scores(with_mask)
    expected = minimize_scalar(reference_loss, args=(scores, tau, mask), bounds=(-1 / tau - 40, 1 / tau + 40),
                               method="bounded", options={"xatol": 1e-9}).x
    got = fitted_bias(torch.from_numpy(scores), torch.arange(len(scores)), torch.from_numpy(mask) if with_mask else None,
                      1 / tau, mean_negatives=True)
    assert got == pytest.approx(expected, abs=1e-4)
    summed = fitted_bias(torch.from_numpy(scores), torch.arange(len(scores)), None, 1 / tau)
    assert got != pytest.approx(summed, abs=1e-2)  # SigLIP's normalisation (a sum) has another minimiser


def test_nce_with_an_offset_equals_its_formula():
    columns, tau = embeddings(), 0.1
    scores = torch.from_numpy(reference_scores(columns))
    mask = reference_mask(LABELS, POSITIVES)
    loss, _ = nce_from_scores(scores, torch.arange(3), torch.from_numpy(mask), tau, bias=-3.5)
    assert loss.item() == pytest.approx(reference_loss(-3.5, scores.numpy(), tau, mask), rel=1e-9)


def test_the_first_batch_fits_the_offset_once_and_its_gradient_there_is_zero():
    loss_fn = NCE(None, temperature=0.05, positives=POSITIVES, fit_bias=True)
    columns = embeddings()
    loss, stats = loss_fn.loss_from_embeddings(columns, LABELS)
    scores, mask = reference_scores(columns), reference_mask(LABELS, POSITIVES)
    fitted = fitted_bias(torch.from_numpy(scores), torch.arange(3), torch.from_numpy(mask), 20.0, mean_negatives=True)
    assert loss_fn.logit_bias.item() == pytest.approx(fitted, abs=1e-5) == loss_fn.fitted_init_bias
    assert stats["bias"].item() == pytest.approx(fitted, abs=1e-5)
    assert loss.item() == pytest.approx(reference_loss(fitted, scores, 0.05, mask), rel=1e-5)
    assert loss.item() < reference_loss(0.0, scores, 0.05, mask)
    loss.backward()
    assert abs(loss_fn.logit_bias.grad.item()) < 1e-4  # the pull on positives equals the push on negatives
    assert columns[0].grad is not None and columns[0].grad.abs().sum() > 0
    with torch.no_grad():
        loss_fn.logit_bias.add_(0.5)  # as an optimizer step would move it
    loss_fn.loss_from_embeddings(embeddings(seed=1), LABELS)
    assert loss_fn.logit_bias.item() == pytest.approx(fitted + 0.5)  # not fitted again: learnt from here on
    card = loss_fn.get_config_dict()
    assert card["fitted_init_bias"] == pytest.approx(fitted, abs=1e-5) and "fit" in card["bias"]


def test_the_class_keeps_the_plain_logit_unless_asked():
    loss_fn = NCE(None, positives=POSITIVES)
    assert not list(loss_fn.parameters()) and "bias" not in loss_fn.get_config_dict()


def test_the_command_line_builds_the_fitted_offset_by_default_and_the_plain_logit_on_request():
    import argparse

    from finetune.config import add_to_parser, from_args
    from finetune.modes import FullSetup
    from retrieval.errors import UsageError

    setup = FullSetup.__new__(FullSetup)  # only _loss is exercised: no dataset, no model download
    setup.model, setup.positives = None, POSITIVES
    assert setup._loss(FinetuneConfig(mode="full", loss="nce")).fit_bias
    assert not setup._loss(FinetuneConfig(mode="full", loss="nce", nce_bias="none")).fit_bias
    with pytest.raises(UsageError, match="'fit' or 'none'"):
        FinetuneConfig(mode="full", loss="nce", nce_bias="zero").validate()
    parser = argparse.ArgumentParser()
    add_to_parser(parser)
    assert from_args(parser.parse_args(["--loss", "nce", "--nce-bias", "none"])).nce_bias == "none"
    assert from_args(parser.parse_args([])).nce_bias == "fit"


def test_the_fingerprint_keeps_older_nce_runs_and_ignores_the_knob_for_other_losses():
    """Runs from before the flag trained the plain logit: that value, not the new default, hashes as absent."""
    plain = FinetuneConfig(loss="nce", nce_bias="none")
    assert FinetuneConfig(loss="nce").fingerprint() != plain.fingerprint()
    without = plain.fingerprint()
    for loss in ("infonce", "siglip", "triplet"):
        assert FinetuneConfig(loss=loss, nce_bias="none").fingerprint() == FinetuneConfig(loss=loss).fingerprint()
    import dataclasses
    import hashlib
    import json

    data = {k: v for k, v in dataclasses.asdict(plain).items() if k not in ("test_split", "batch_size_encode")}
    for f in dataclasses.fields(plain):
        if f.name in ("siglip_init", "nce_bias") or (f.metadata.get("fingerprint_default") is True
                                                     and data[f.name] == f.default):
            data.pop(f.name)
    assert without == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("nce_bias", ["fit", "none"])
def test_full_mode_trains_nce_and_learns_the_offset(tiny_model_path, beir_dir, tmp_path, nce_bias):
    """The trainer gives the offset its own learning rate (1e-3) only when it exists: a mapping that matches no
    parameter is an error in sentence-transformers."""
    from finetune.train import finetune
    from retrieval.data import load_beir

    config = FinetuneConfig(base=str(tiny_model_path), mode="full", epochs=2, batch_size=4, dev_fraction=0.25,
                            learning_rate=1e-4, precision="fp32", batch_size_encode=16, interpolate="none",
                            test_split="", loss="nce", nce_bias=nce_bias)
    result = finetune(load_beir(beir_dir), config, tmp_path / "out")
    biases = [row["bias"] for row in result.train_log if "bias" in row]
    if nce_bias == "none":
        assert not biases and result.train_log[-1]["step"] > 0
    else:
        assert len(biases) >= 2 and biases[-1] != pytest.approx(biases[0], abs=1e-4)  # learnt after the fit
