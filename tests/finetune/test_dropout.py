"""--attention-dropout and --hidden-dropout: each changes its own dropouts, and only in the trained copy."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from finetune.config import FinetuneConfig
from finetune.dropout import set_attention_dropout, set_hidden_dropout
from retrieval.errors import UsageError


def _train_mode_outputs(model, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    features = model.tokenize(texts)
    model.train()
    with torch.no_grad():
        return model(dict(features))["sentence_embedding"], model(dict(features))["sentence_embedding"]


def _hidden_dropouts_off(model) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and not name.endswith("attention.self.dropout"):
            module.p = 0.0


def test_attention_dropout_zero_makes_training_forwards_deterministic(tiny_model):
    """With hidden dropouts off, two train-mode forwards differ only through attention dropout."""
    _hidden_dropouts_off(tiny_model)
    texts = ["cats purr softly", "fish swim in the sea"]
    first, second = _train_mode_outputs(tiny_model, texts)
    assert not torch.allclose(first, second)  # MiniLM-style 0.1 attention dropout is live in train mode
    assert set_attention_dropout(tiny_model, 0.0) == 2  # one self-attention module per layer of the 2-layer BERT
    first, second = _train_mode_outputs(tiny_model, texts)
    torch.testing.assert_close(first, second)
    tiny_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(dict(tiny_model.tokenize(texts)))["sentence_embedding"], first)


def test_only_attention_probability_dropouts_change(tiny_model):
    set_attention_dropout(tiny_model, 0.0)
    probabilities = {name: m.p for name, m in tiny_model.named_modules() if isinstance(m, nn.Dropout)}
    attention = {n: p for n, p in probabilities.items() if n.endswith("attention.self.dropout")}
    assert attention and set(attention.values()) == {0.0}
    assert {p for n, p in probabilities.items() if n not in attention} == {0.1}  # hidden-state dropouts kept


def test_hidden_dropout_changes_every_other_dropout(tiny_model):
    changed = set_hidden_dropout(tiny_model, 0.0)
    probabilities = {name: m.p for name, m in tiny_model.named_modules() if isinstance(m, nn.Dropout)}
    attention = {n for n in probabilities if n.endswith("attention.self.dropout")}
    assert len(attention) == 2 and {probabilities[n] for n in attention} == {0.1}  # attention probabilities kept
    assert changed == len(probabilities) - 2 and {p for n, p in probabilities.items() if n not in attention} == {0.0}


def test_both_off_makes_training_forwards_deterministic(tiny_model):
    texts = ["cats purr softly", "fish swim in the sea"]
    set_attention_dropout(tiny_model, 0.0)
    first, second = _train_mode_outputs(tiny_model, texts)
    assert not torch.allclose(first, second)  # the hidden-state dropouts alone still make forwards random
    set_hidden_dropout(tiny_model, 0.0)
    first, second = _train_mode_outputs(tiny_model, texts)
    torch.testing.assert_close(first, second)


def test_a_model_without_attention_changes_nothing(keyword_model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(keyword_model_dir), device="cpu")
    assert set_attention_dropout(model, 0.0) == 0 and set_hidden_dropout(model, 0.0) == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_out_of_range_is_refused(tiny_model, bad):
    with pytest.raises(ValueError):
        set_attention_dropout(tiny_model, bad)
    with pytest.raises(ValueError):
        set_hidden_dropout(tiny_model, bad)
    with pytest.raises(UsageError, match="--attention-dropout"):
        FinetuneConfig(attention_dropout=bad).validate()
    with pytest.raises(UsageError, match="--hidden-dropout"):
        FinetuneConfig(hidden_dropout=bad).validate()


def test_hidden_dropout_default_keeps_the_model_and_the_fingerprint():
    assert FinetuneConfig().hidden_dropout == -1
    FinetuneConfig().validate()
    assert FinetuneConfig(hidden_dropout=-1).fingerprint() == FinetuneConfig().fingerprint()
    assert FinetuneConfig(hidden_dropout=0.0).fingerprint() != FinetuneConfig().fingerprint()


def test_training_sets_it_on_the_trained_copy_only(tiny_model_path, beir_dir, tmp_path, monkeypatch):
    """The trainer's model runs with the flag's dropout; the base model and the saved config stay as shipped."""
    from finetune import modes
    from finetune.train import finetune
    from retrieval.data import load_beir
    from retrieval.models import load_model

    seen = {}
    build = modes.FullSetup.__init__

    def spy(self, *args, **kwargs):
        build(self, *args, **kwargs)
        seen["trained"] = {m.p for n, m in self.model.named_modules() if n.endswith("attention.self.dropout")}
        seen["base"] = {m.p for n, m in self.base.named_modules() if n.endswith("attention.self.dropout")}
        seen["trained hidden"] = {m.p for n, m in self.model.named_modules()
                                  if isinstance(m, nn.Dropout) and not n.endswith("attention.self.dropout")}
        seen["base hidden"] = {m.p for n, m in self.base.named_modules()
                               if isinstance(m, nn.Dropout) and not n.endswith("attention.self.dropout")}

    monkeypatch.setattr(modes.FullSetup, "__init__", spy)
    base = load_model(str(tiny_model_path))
    config = FinetuneConfig(base=str(tiny_model_path), mode="full", epochs=1, batch_size=4, dev_fraction=0.25,
                            precision="fp32", batch_size_encode=16, interpolate="none", test_split="",
                            attention_dropout=0.0, hidden_dropout=0.0)
    result = finetune(load_beir(beir_dir), config, tmp_path / "out", base_model=base)
    assert seen == {"trained": {0.0}, "base": {0.1}, "trained hidden": {0.0}, "base hidden": {0.1}}
    saved = json.loads((result.model_path / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.1 and saved["hidden_dropout_prob"] == 0.1
