"""Faster CPU encoding: one registry of ways to run the same bi-encoder.

=============  ==========================================================================
backend        what runs
=============  ==========================================================================
torch          plain ``SentenceTransformer.encode`` in float32 (the reference)
torch-bf16     bfloat16: a corpus (:func:`bulk_context`) runs on the weights cast to bfloat16 and
               restored exactly afterwards, 1.3-1.4x autocast's speed on an AMX CPU at a cosine
               of >= 0.9999 to float32; queries run under ``torch.autocast(dtype=bfloat16)``
torch-int8     ``torch.ao.quantization.quantize_dynamic``: nn.Linear weights int8, activations
               quantised per batch (the torch counterpart of ONNX Runtime's dynamic int8)
onnx           sentence-transformers' ONNX Runtime backend (``backend="onnx"``), exported
               from the local model folder
onnx-int8      the ONNX export quantised by ``export_dynamic_quantized_onnx_model`` (avx512_vnni)
openvino       sentence-transformers' OpenVINO backend (``backend="openvino"``)
openvino-int8  that OpenVINO model with static int8 post-training quantisation (optimum-intel's
               ``OVQuantizer``, NNCF), calibrated on a sample of *your* corpus rather than on
               the generic sentences ``export_static_quantized_openvino_model`` downloads
=============  ==========================================================================

sentence-transformers already sorts each call's texts by length before batching,
so every backend gets length-sorted batches for free.

The ONNX/OpenVINO backends (:mod:`retrieval.backend_exports`) need ``optimum-onnx[onnxruntime]`` /
``optimum-intel[openvino]``; when they cannot be imported
:class:`~retrieval.backend_exports.BackendUnavailable` says so. Neither is a dependency:
optimum-intel 2.2 pins ``transformers<5.6`` (``.ci/openvino-env`` installs an environment
where it runs), and optimum-onnx 0.1 pins ``transformers<4.58``, which sentence-transformers 6
(``transformers>=5``) excludes, so the ONNX rows stay unavailable until optimum-onnx moves.
Exports are written to a cache folder (``$RETRIEVAL_CACHE/backends``), never into the
model's own folder.

``auto`` (:func:`auto_backend`, the default of ``retrieval index build`` and of the main job's
indexes) is ``torch-bf16`` where the hardware runs bf16 natively (CUDA GPUs with bf16, CPUs
with AVX512-BF16 or AMX; measured within 0.001 nDCG@10 of float32 at 2.4x the speed on such a
CPU for the base model, ``bench/encode.py``; for two tuned models on SciFact within 0.002
overall and 0.0035 on its 104 unseen-document queries, README "Where a training step's time
goes") and ``torch`` (float32) everywhere else; the choice is logged and recorded in the index
metadata.

Whatever the backend, the model's fingerprint is that of its float32 torch weights, so an
index built with a fast backend is still searchable with the plain model; the index
records the backend (``IndexMeta.backend``) so the difference is visible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrieval.backend_exports import load_onnx, load_onnx_int8, load_openvino, load_openvino_int8
from retrieval.encode import DEFAULT_BATCH_SIZE, encode
from retrieval.models import load_model, model_fingerprint

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


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


BACKENDS: dict[str, Callable[..., SentenceTransformer]] = {
    "torch": _load_torch,
    "torch-bf16": _load_torch,
    "torch-int8": _load_torch_int8,
    "onnx": load_onnx,
    "onnx-int8": load_onnx_int8,
    "openvino": load_openvino,
    "openvino-int8": load_openvino_int8,
}


NEEDS_CALIBRATION = frozenset({"openvino-int8"})


def native_bf16(device: str | None = None) -> bool:
    """Whether bf16 runs natively here: a CUDA device with bf16, or a CPU with AVX512-BF16 / AMX-BF16."""
    import torch

    if (device is None or str(device).startswith("cuda")) and torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_backend(device: str | None = None, precision: str = "auto") -> tuple[str, str]:
    """``(backend, why)``: the fastest torch backend within 0.5 points nDCG@10 of float32 on this hardware.

    ``precision`` (the fine-tuning flag) overrides: ``fp32`` forces ``torch``, ``bf16`` forces
    ``torch-bf16``; ``auto`` decides by :func:`native_bf16`.
    """
    if precision == "bf16":
        return "torch-bf16", "--precision bf16"
    if precision in ("fp32", "fp16"):
        return "torch", f"--precision {precision}"
    if native_bf16(device):
        return "torch-bf16", "native bf16 here: autocast, within 0.002 nDCG@10 of float32 (bench/encode.py, README)"
    return "torch", "no native bf16 here, so float32 (bf16 would be emulated and slower)"


def load_model_with_backend(
    name: str,
    backend: str = "torch",
    device: str | None = None,
    trust_remote_code: bool = False,
    max_seq_length: int | None = None,
    calibration_texts: list[str] | None = None,
) -> SentenceTransformer:
    """Load ``name`` to run on ``backend`` (see the module table).

    Raises :class:`~retrieval.backend_exports.BackendUnavailable` when the backend's packages are missing.

    ``calibration_texts`` is used (and required) only by ``openvino-int8``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    extra = {"calibration_texts": calibration_texts} if backend in NEEDS_CALIBRATION else {}
    model = BACKENDS[backend](name, device, trust_remote_code=trust_remote_code, max_seq_length=max_seq_length,
                              **extra)
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


@contextlib.contextmanager
def bulk_context(model: SentenceTransformer, backend: str | None = None) -> Iterator[None]:
    """The context for encoding a whole corpus with ``model``: :func:`backend_context`, except for ``torch-bf16``.

    There the floating-point weights themselves are cast to bfloat16 for the duration (autocast
    recasts every weight and most activations at every call: ``copy_`` was 37% of a bf16 encode,
    ``bench/profile_train.py``) and the float32 tensors are put back on exit, bit for bit, also
    after an error. Not for a model that other threads use meanwhile (search keeps
    :func:`backend_context`); the model's fingerprint must be taken outside (it is cached).
    """
    backend = backend or getattr(model, "_retrieval_backend", "torch")
    if backend != "torch-bf16":
        with backend_context(model, backend):
            yield
        return
    import torch

    saved = [(p, p.data) for p in model.parameters() if p.dtype == torch.float32]
    try:
        for p, data in saved:
            p.data = data.to(torch.bfloat16)
        with torch.autocast(device_type=model.device.type, enabled=False):  # an outer autocast would recast
            yield
    finally:
        for p, data in saved:
            p.data = data


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
