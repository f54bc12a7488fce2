"""--lora-rank: adapters on every linear layer, merged into a plain model whose embeddings equal the adapted one's."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("peft")

from finetune.config import FinetuneConfig  # noqa: E402
from finetune.lora import add_lora, load_checkpoint, merged  # noqa: E402
from retrieval.errors import UsageError  # noqa: E402

TEXTS = ["cats purr softly", "fish swim in the sea", "what about number 7"]


def _embed(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=False)


def _nudge_adapters(model, seed: int = 0) -> None:
    """Give every LoRA B a random value (peft starts it at zero, where the adapter is the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)


def test_a_fresh_adapter_is_the_base_model_and_only_adapters_train(tiny_model):
    import copy

    base = copy.deepcopy(tiny_model)
    trainable = add_lora(tiny_model, rank=4, alpha=8)
    names = [n for n, p in tiny_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert trainable == sum(p.numel() for n, p in tiny_model.named_parameters() if "lora_" in n)
    # every linear layer of both BERT layers carries an adapter: q, k, v, attention output, intermediate, output
    adapted = {n.rsplit(".lora_A", 1)[0] for n in names if ".lora_A" in n}
    assert sum(".encoder.layer." in n for n in adapted) == 2 * 6 and not any("pooler" in n for n in adapted)
    torch.testing.assert_close(_embed(tiny_model), _embed(base))  # B = 0: the adapter changes nothing yet


def test_the_merged_model_embeds_as_the_adapted_one_and_needs_no_peft(tiny_model, tmp_path):
    import copy

    from sentence_transformers import SentenceTransformer

    base = copy.deepcopy(tiny_model)
    before = _embed(base)
    add_lora(tiny_model, rank=4, alpha=8)
    _nudge_adapters(tiny_model)
    adapted = _embed(tiny_model)
    assert not torch.allclose(adapted, before, atol=1e-4)
    plain = merged(tiny_model, base)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(_embed(plain), adapted, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_embed(base), before)  # the base model is copied, never changed
    plain.save(str(tmp_path / "merged"))
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    torch.testing.assert_close(_embed(SentenceTransformer(str(tmp_path / "merged"), device="cpu")), adapted,
                               atol=1e-5, rtol=1e-5)


def test_merging_a_model_without_adapter_is_refused(tiny_model):
    with pytest.raises(ValueError, match="no LoRA adapter"):
        merged(tiny_model, tiny_model)


def test_bad_settings_are_refused():
    with pytest.raises(UsageError, match="--lora-rank"):
        FinetuneConfig(lora_rank=-1).validate()
    with pytest.raises(ValueError, match="rank"):
        add_lora(None, rank=0, alpha=1)


def test_finetune_with_lora_exports_the_selected_checkpoint_as_a_plain_model(tiny_model_path, beir_dir, tmp_path):
    """The exported model is the adapter of the dev-selected checkpoint merged in, not the last step's."""
    from sentence_transformers import SentenceTransformer

    from finetune.train import finetune
    from retrieval.data import load_beir
    from retrieval.models import load_model

    base = load_model(str(tiny_model_path))
    config = FinetuneConfig(base=str(tiny_model_path), mode="full", epochs=3, batch_size=4, dev_fraction=0.25,
                            learning_rate=5e-3, precision="fp32", batch_size_encode=16, interpolate="none",
                            test_split="", lora_rank=4, evals_per_epoch=1)
    out = tmp_path / "out"
    result = finetune(load_beir(beir_dir), config, out, base_model=base)
    model_dir = result.model_path
    assert not (model_dir / "adapter_config.json").exists()
    exported = SentenceTransformer(str(model_dir), device="cpu")
    assert not torch.allclose(_embed(exported), _embed(base), atol=1e-4)  # trained
    state = json.loads(sorted(out.glob("checkpoints/checkpoint-*/trainer_state.json"))[-1].read_text())
    best = state["best_model_checkpoint"]
    assert best, "the trainer selected no checkpoint"
    selected = load_model(str(tiny_model_path))
    add_lora(selected, rank=4, alpha=8)
    load_checkpoint(selected, best)
    torch.testing.assert_close(_embed(exported), _embed(selected), atol=1e-5, rtol=1e-5)


def test_a_checkpoint_reloads_into_the_adapted_model(tiny_model, tmp_path):
    """What the trainer saves (``model.save``) comes back exactly, although a fresh model could not read it."""
    add_lora(tiny_model, rank=4, alpha=8)
    _nudge_adapters(tiny_model, seed=1)
    saved = _embed(tiny_model)
    tiny_model.save(str(tmp_path / "checkpoint-1"))
    _nudge_adapters(tiny_model, seed=2)
    assert not torch.allclose(_embed(tiny_model), saved, atol=1e-4)
    load_checkpoint(tiny_model, tmp_path / "checkpoint-1")
    torch.testing.assert_close(_embed(tiny_model), saved)
