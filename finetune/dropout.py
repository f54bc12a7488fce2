"""Attention dropout while training: what it costs and how to turn it off.

PyTorch's ``scaled_dot_product_attention`` runs a fused kernel (no ``[heads, L, L]`` matrix
in memory) only when its ``dropout_p`` is 0; with dropout on a CPU it falls back to the plain
math path: a batched matmul, a softmax, a Bernoulli mask and a multiply over every
attention matrix, forward and backward. BERT-style encoders ship with an attention
dropout of 0.1 (MiniLM included), so a training step pays that path although encoding,
in eval mode, never does. ``bench/profile_train.py`` measures the share.

:func:`set_attention_dropout` changes only the attention-probability dropout (each attention
module's own ``nn.Dropout`` or ``attention_dropout`` float that transformers passes to SDPA);
:func:`set_hidden_dropout` changes every other ``nn.Dropout`` (embeddings, attention output,
feed-forward output): MiniLM's 0.1 there costs a Bernoulli draw and a multiply over every
hidden state, about 9% of a training step on CPU with the attention dropout off. Neither edits
the model's config, so a saved model reads exactly as before.
"""

from __future__ import annotations

from torch import nn


def set_attention_dropout(model: nn.Module, p: float) -> int:
    """Set the attention-probability dropout of every attention module of ``model`` to ``p``.

    Returns how many modules changed: 0 for a model without attention (a static embedding) or
    of an architecture this does not know, which the caller reports. Raises ``ValueError`` for
    ``p`` outside [0, 1).
    """
    if not 0 <= p < 1:
        raise ValueError(f"attention dropout must be in [0, 1), got {p}")
    changed = 0
    for module in model.modules():
        if (dropout := _attention_dropout(module)) is not None:
            dropout.p = p
            changed += 1
        elif "attention" in type(module).__name__.lower() and isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p
            changed += 1
    return changed


def set_hidden_dropout(model: nn.Module, p: float) -> int:
    """Set every ``nn.Dropout`` of ``model`` that is not an attention-probability dropout to ``p``.

    Returns how many modules changed (0 for a model without dropout layers). Raises ``ValueError``
    for ``p`` outside [0, 1).
    """
    if not 0 <= p < 1:
        raise ValueError(f"hidden dropout must be in [0, 1), got {p}")
    attention = {id(_attention_dropout(module)) for module in model.modules() if _attention_dropout(module) is not None}
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout) and id(module) not in attention:
            module.p = p
            changed += 1
    return changed


def _attention_dropout(module: nn.Module) -> nn.Dropout | None:
    """The attention-probability ``nn.Dropout`` that ``module`` owns, if it is a self-attention module."""
    dropout = getattr(module, "dropout", None)
    if "attention" in type(module).__name__.lower() and isinstance(dropout, nn.Dropout) and _feeds_attention(module):
        return dropout
    return None


def _feeds_attention(module: nn.Module) -> bool:
    """True for a self-attention module (query/key projections), not its output block (dense + LayerNorm)."""
    names = {name for name, _ in module.named_children()}
    return bool({"query", "key"} <= names or {"q_proj", "k_proj"} <= names or "qkv" in names or "Wqkv" in names)
