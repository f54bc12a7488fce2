"""Faster CPU encoding: one registry of ways to run the same bi-encoder.

=============  ==========================================================================
backend        what runs
=============  ==========================================================================
torch          plain ``SentenceTransformer.encode`` in float32 (the reference)
torch-bf16     the same model under ``torch.autocast(dtype=bfloat16)``; weights unchanged
torch-int8     ``torch.ao.quantization.quantize_dynamic``: nn.Linear weights int8, activations
               quantised per batch (the torch counterpart of ONNX Runtime's dynamic int8)
onnx           sentence-transformers' ONNX Runtime backend (``backend="onnx"``), exported
               from the local model folder
onnx-int8      the ONNX export quantised by ``export_dynamic_quantized_onnx_model`` (avx512_vnni)
openvino       sentence-transformers' OpenVINO backend (``backend="openvino"``)
=============  ==========================================================================

sentence-transformers already sorts each call's texts by length before batching,
so every backend gets length-sorted batches for free.

The ONNX/OpenVINO backends need ``optimum-onnx[onnxruntime]`` / ``optimum-intel[openvino]``;
when they cannot be imported :class:`BackendUnavailable` says so. Exports are written to
a cache folder (``$RETRIEVAL_CACHE/backends``), never into the model's own folder.

Whatever the backend, the model's fingerprint is that of its float32 torch weights, so an
index built with a fast backend is still searchable with the plain model; the index
records the backend (``IndexMeta.backend``) so the difference is visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrieval.encode import DEFAULT_BATCH_SIZE, encode
from retrieval.models import load_model, model_fingerprint, resolve_model_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

ONNX_INT8_CONFIG = "avx512_vnni"
ONNX_INT8_FILE = f"onnx/model_qint8_{ONNX_INT8_CONFIG}.onnx"


class BackendUnavailable(RuntimeError):
    """The backend's packages are missing or incompatible; the message says which."""


def _require(module: str, requirement: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as err:  # an incompatible optimum raises ImportError deep inside transformers
        raise BackendUnavailable(f"this backend needs {requirement} ({type(err).__name__}: {err})") from err


def cache_root() -> Path:
    return Path(os.environ.get("RETRIEVAL_CACHE", Path.home() / ".cache" / "retrieval")) / "backends"


def _export_dir(name: str, fingerprint: str) -> Path:
    """A private copy of the model folder to hold ONNX/OpenVINO exports beside the weights."""
    source = Path(resolve_model_path(name))
    if not source.is_dir():
        raise BackendUnavailable(f"{name}: exporting needs a local model folder")
    target = cache_root() / f"{source.name}-{fingerprint}"
    if not target.exists():
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("onnx", "openvino"))
        os.replace(tmp, target)
    return target


def _load_torch(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    model = load_model(name, device=device, **kwargs)
    model_fingerprint(model)
    return model


def _load_torch_int8(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    import torch
    from torch.ao.quantization import quantize_dynamic

    model = _load_torch(name, "cpu", **kwargs)  # fingerprint of the float weights is cached before quantising
    quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def _load_exported(name: str, device: str | None, backend: str, file_name: str | None = None, **kwargs) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    fingerprint = model_fingerprint(load_model(name, device="cpu", **kwargs))
    folder = _export_dir(name, fingerprint)
    options = {"model_kwargs": {"file_name": file_name}} if file_name else {}
    model = SentenceTransformer(str(folder), device=device or "cpu", backend=backend, **options)
    if kwargs.get("max_seq_length"):
        model.max_seq_length = kwargs["max_seq_length"]
    if not (folder / backend).exists():
        model.save_pretrained(str(folder))  # keep the export: the next load skips it
    model._retrieval_fingerprint = fingerprint
    return model


def _load_onnx(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    _require("optimum.onnxruntime", "optimum-onnx[onnxruntime] (pip install 'sentence-transformers[onnx]')")
    return _load_exported(name, device, "onnx", **kwargs)


def _load_onnx_int8(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    _require("optimum.onnxruntime", "optimum-onnx[onnxruntime] (pip install 'sentence-transformers[onnx]')")
    from sentence_transformers import export_dynamic_quantized_onnx_model

    model = _load_onnx(name, device, **kwargs)
    folder = _export_dir(name, model._retrieval_fingerprint)
    if not (folder / ONNX_INT8_FILE).exists():
        export_dynamic_quantized_onnx_model(model, ONNX_INT8_CONFIG, str(folder))
    return _load_exported(name, device, "onnx", ONNX_INT8_FILE, **kwargs)


def _load_openvino(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    _require("optimum.intel.openvino", "optimum-intel[openvino] (pip install 'sentence-transformers[openvino]')")
    return _load_exported(name, device, "openvino", **kwargs)


BACKENDS: dict[str, Callable[..., SentenceTransformer]] = {
    "torch": _load_torch,
    "torch-bf16": _load_torch,
    "torch-int8": _load_torch_int8,
    "onnx": _load_onnx,
    "onnx-int8": _load_onnx_int8,
    "openvino": _load_openvino,
}


def load_model_with_backend(
    name: str,
    backend: str = "torch",
    device: str | None = None,
    trust_remote_code: bool = False,
    max_seq_length: int | None = None,
) -> SentenceTransformer:
    """Load ``name`` to run on ``backend`` (see the module table); raises :class:`BackendUnavailable`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    model = BACKENDS[backend](name, device, trust_remote_code=trust_remote_code, max_seq_length=max_seq_length)
    model._retrieval_backend = backend
    return model


@contextlib.contextmanager
def backend_context(model: SentenceTransformer, backend: str | None = None) -> Iterator[None]:
    """The context ``model.encode`` must run in: bf16 autocast for ``torch-bf16``, nothing otherwise."""
    backend = backend or getattr(model, "_retrieval_backend", "torch")
    if backend != "torch-bf16":
        yield
        return
    import torch

    with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16):
        yield


def encode_with_backend(
    model: SentenceTransformer,
    texts: list[str],
    prompt: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    backend: str | None = None,
) -> np.ndarray:
    """:func:`retrieval.encode.encode` run in the backend's context; always float32."""
    with backend_context(model, backend):
        return encode(model, texts, prompt, batch_size, progress)


def texts_fingerprint(texts: list[str], prompt: str | None = None) -> str:
    digest = hashlib.sha256((prompt or "").encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:16]
