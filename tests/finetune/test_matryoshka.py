"""Matryoshka training around our losses, the trained widths recorded beside the model, and --dim indexing of it."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from finetune.config import FinetuneConfig
from finetune.losses.cached_info_nce import CachedInfoNCE
from finetune.losses.info_nce import InfoNCE
from finetune.losses.matryoshka import RECORD_FILE, Matryoshka, matryoshka_loss, read_record, write_record
from finetune.losses.nce import NCE
from finetune.losses.siglip import SigLIP
from finetune.losses.triplet import Triplet
from retrieval.errors import UsageError
from tests.finetune.test_info_nce import batch, ids

POSITIVES = {q: {100 + q} for q in range(4)}


def grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_around_infonce_it_is_the_sum_of_infonce_on_each_truncated_width(tiny_model):
    tiny_model.eval()  # no dropout: the two computations see the same embeddings
    dims = [32, 16, 8]
    loss_fn = Matryoshka(tiny_model, InfoNCE(tiny_model, positives=POSITIVES), dims)
    value = loss_fn(batch(tiny_model, 2), ids(2))
    assert math.isfinite(value.item()) and value.requires_grad
    value.backward()
    ours = grads(tiny_model)
    assert ours and all(torch.isfinite(g).all() for g in ours) and any(g.abs().sum() > 0 for g in ours)

    tiny_model.zero_grad()
    plain = InfoNCE(None, positives=POSITIVES)
    columns = [tiny_model(f)["sentence_embedding"] for f in batch(tiny_model, 2)]
    expected = sum(plain.loss_from_embeddings([F.normalize(c[:, :d], dim=-1) for c in columns], ids(2))[0] for d in dims)
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    expected.backward()
    for mine, other in zip(ours, grads(tiny_model), strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-4, atol=1e-5)  # float32 op-order noise

    stats = loss_fn.last_stats
    assert stats["loss"] == pytest.approx(value.item())
    assert sum(stats[f"loss@{d}"] for d in dims) == pytest.approx(value.item(), rel=1e-5)
    assert {f"accuracy@{d}" for d in dims} <= set(stats) and "mi_lower_bound" in stats
    assert loss_fn.get_config_dict()["matryoshka_dims"] == (32, 16, 8) and "2205.13147" in loss_fn.citation


@pytest.mark.parametrize("make", [
    lambda m: NCE(m, positives=POSITIVES),
    lambda m: SigLIP(m, positives=POSITIVES),
    lambda m: Triplet(m, positives=POSITIVES),
    lambda m: InfoNCE(m, symmetric=True, learnable_temperature=True, positives=POSITIVES),
], ids=["nce", "siglip", "triplet", "infonce-symmetric-learnt-tau"])
def test_every_loss_of_the_family_trains_under_matryoshka(tiny_model, make):
    tiny_model.train()
    value = Matryoshka(tiny_model, make(tiny_model), [32, 8])(batch(tiny_model, 1), ids(1))
    assert math.isfinite(value.item())
    value.backward()
    assert any(g.abs().sum() > 0 for g in grads(tiny_model))


def test_gradient_cache_under_matryoshka_equals_the_plain_loss(tiny_model):
    tiny_model.eval()
    dims = [32, 16]
    cached = Matryoshka(tiny_model, CachedInfoNCE(tiny_model, positives=POSITIVES, mini_batch_size=2), dims)
    value = cached(batch(tiny_model, 1), ids(1))
    value.backward()
    ours = grads(tiny_model)
    assert cached.last_stats["loss@16"] > 0
    tiny_model.zero_grad()
    plain = Matryoshka(tiny_model, InfoNCE(tiny_model, positives=POSITIVES), dims)(batch(tiny_model, 1), ids(1))
    plain.backward()
    assert value.item() == pytest.approx(plain.item(), rel=1e-5)
    for mine, other in zip(ours, grads(tiny_model), strict=True):
        torch.testing.assert_close(mine, other, rtol=1e-3, atol=1e-5)


def test_a_width_beyond_the_model_is_a_usage_error(tiny_model):
    with pytest.raises(UsageError, match="--matryoshka-dims 64,16"):
        matryoshka_loss(tiny_model, InfoNCE(tiny_model), [64, 16])


def test_config_parses_and_checks_the_widths():
    assert FinetuneConfig().parsed_matryoshka_dims() == []
    assert FinetuneConfig(matryoshka_dims="384, 256,128,64").parsed_matryoshka_dims() == [384, 256, 128, 64]
    FinetuneConfig(matryoshka_dims="384,64", queue_size=16).validate()
    for bad, message in ((dict(matryoshka_dims="384,x"), "distinct positive"), (dict(matryoshka_dims="0,4"), "positive"),
                         (dict(matryoshka_dims="8,8"), "distinct"), (dict(matryoshka_dims="8", mode="query"), "--mode full"),
                         (dict(matryoshka_dims="8", queue_size=4, momentum=0.9), "not implemented"),
                         (dict(matryoshka_dims="8", gradient_cache=True, learnable_temperature=True), "not implemented")):
        with pytest.raises(UsageError, match=message):
            FinetuneConfig(**bad).validate()


def test_full_setup_wraps_the_chosen_loss(tiny_model):
    from finetune.modes import FullSetup

    setup = FullSetup.__new__(FullSetup)
    setup.model, setup.positives = tiny_model, POSITIVES
    loss = setup._loss(FinetuneConfig(matryoshka_dims="32,16", loss="triplet"))
    assert isinstance(loss, Matryoshka) and isinstance(loss.loss, Triplet) and loss.matryoshka_dims == (32, 16)
    assert not isinstance(setup._loss(FinetuneConfig()), Matryoshka)


def test_the_record_round_trips_and_a_missing_or_bad_one_reads_as_none(tmp_path):
    assert read_record(tmp_path) is None
    write_record(tmp_path, [64, 384, 128], embedding_dim=384)
    assert read_record(tmp_path) == [384, 128, 64]
    assert json.loads((tmp_path / RECORD_FILE).read_text())["embedding_dim"] == 384
    (tmp_path / RECORD_FILE).write_text("{oops")
    assert read_record(tmp_path) is None
    (tmp_path / RECORD_FILE).write_text(json.dumps({"matryoshka_dims": ["64"]}))
    assert read_record(tmp_path) is None
    assert read_record("no/such/folder") is None


def test_full_mode_with_matryoshka_and_a_queue_records_the_widths_for_index_build(tiny_model_path, beir_dir, tmp_path):
    from cli import main
    from retrieval.data import load_beir
    from finetune.train import finetune

    config = FinetuneConfig(base=str(tiny_model_path), mode="full", epochs=1, batch_size=4, dev_fraction=0.25,
                            learning_rate=1e-3, precision="fp32", batch_size_encode=16, interpolate="none",
                            test_split="", matryoshka_dims="32,16,8", queue_size=16)
    result = finetune(load_beir(beir_dir), config, tmp_path / "out")
    assert read_record(result.model_path) == [32, 16, 8]
    assert any("loss@8" in row for row in result.train_log)
    out = tmp_path / "idx"
    assert main(["index", "build", "--data", str(beir_dir), "--model", str(result.model_path), "--out", str(out),
                 "--dim", "16"]) == 0
    assert json.loads((out / "meta.json").read_text())["truncate_dim"] == 16
