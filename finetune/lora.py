"""LoRA through ``peft``: train low-rank adapters instead of every weight, then merge them into a plain model.

Why: with a few hundred training queries, full fine-tuning can move the encoder far from a base
model that was already good, and the loss shows up on documents training never saw. LoRA (Hu et
al. 2021, arXiv:2106.09685) freezes each linear layer's weight ``W`` and learns a low-rank update

    W' = W + (alpha / r) * B A,      A: r x d_in,  B: d_out x r,  B = 0 at the start

so the tuned model starts exactly at the base model and can only move within a rank-``r``
subspace per layer ("LoRA learns less and forgets less", Biderman et al. 2024, arXiv:2405.09673).

The contract:

* :func:`add_lora` wraps the transformer's linear layers in place with ``peft.inject_adapter_in_model``
  (sentence-transformers' ``add_adapter`` goes through transformers, which wants peft >= 0.22; the
  registry has 0.21); the trainer saves the adapted model in its checkpoints and
  :class:`LoraCheckpoints` reloads the selected one (:func:`load_checkpoint`);
* :func:`merged` returns a copy of the *base* model whose weights are ``W + (alpha/r) B A``: a
  plain sentence-transformers folder once saved, loadable without ``peft`` by any tool, whose
  embeddings equal the adapted model's (the tests check both).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def add_lora(model: SentenceTransformer, rank: int, alpha: float, dropout: float = 0.0) -> int:
    """Add a LoRA adapter of ``rank`` to every linear layer of ``model``'s transformer; return its trainable size.

    Every other weight is frozen. ``peft``'s ``all-linear`` target leaves a model's output head out, and
    the pooler is left out here.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # an optional dependency: name the extra that brings it
        from retrieval.errors import UsageError

        raise UsageError("--lora-rank needs the peft package: pip install 'retrieval-tune[lora]' (or pip install peft)") from exc
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")

    # BERT's pooler feeds nothing sentence-transformers pools: an adapter there would only be dead weight
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                        exclude_modules=r".*\bpooler\b.*")
    for module in model:
        backbone = getattr(module, "auto_model", None)
        if backbone is not None:
            inject_adapter_in_model(config, backbone)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def has_lora(model) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def load_checkpoint(model: SentenceTransformer, folder: str | Path) -> None:
    """Load a trainer checkpoint of the adapted ``model`` back into it (adapter and frozen weights, strictly).

    sentence-transformers reloads a checkpoint by building a fresh model from its folder,
    which knows nothing of an adapter injected with ``peft``: the checkpoint's ``base_layer``
    and ``lora_*`` keys would not match. The backbone's own ``state_dict`` does.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    modules = json.loads((folder / "modules.json").read_text())
    for entry, module in zip(modules, model):
        backbone = getattr(module, "auto_model", None)
        if backbone is not None and has_lora(backbone):
            backbone.load_state_dict(load_file(str(folder / entry["path"] / "model.safetensors")), strict=True)


class LoraCheckpoints:
    """Trainer mixin (first in the bases): checkpoints of a LoRA-adapted model reload through :func:`load_checkpoint`."""

    def _load_from_checkpoint(self, checkpoint_path: str, *args, **kwargs) -> None:
        if has_lora(self.model):
            load_checkpoint(self.model, checkpoint_path)
        else:
            super()._load_from_checkpoint(checkpoint_path, *args, **kwargs)


def merged(model: SentenceTransformer, base: SentenceTransformer) -> SentenceTransformer:
    """A copy of ``base`` holding ``model``'s weights with its active LoRA updates added in (no ``peft`` inside).

    ``model`` must be ``base`` plus an adapter from :func:`add_lora` (the same modules, names and
    shapes); weights outside the adapted layers are taken from ``model``.
    """
    from peft.tuners.lora import LoraLayer

    from retrieval.models import forget_fingerprints

    trained = model.state_dict()
    adapted = {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    if not adapted:
        raise ValueError("the model holds no LoRA adapter to merge")
    state = {}
    for key in base.state_dict():
        owner, _, leaf = key.rpartition(".")
        layer = adapted.get(owner)
        if layer is None:
            state[key] = trained[key]
            continue
        value = trained[f"{owner}.base_layer.{leaf}"]
        if leaf == "weight":
            value = value + sum(layer.get_delta_weight(name) for name in layer.active_adapters).to(value.dtype)
        state[key] = value
    out = copy.deepcopy(base)
    out.load_state_dict(state)
    forget_fingerprints(out)
    return out
