"""The exported backends: ONNX Runtime and OpenVINO, exported once into a cache folder and quantised there.

:mod:`retrieval.backends` is the registry and the torch backends; this module holds what the
``onnx``, ``onnx-int8``, ``openvino`` and ``openvino-int8`` rows need: the packages they require
(:class:`BackendUnavailable` says which are missing), a private copy of the model folder under
``$RETRIEVAL_CACHE/backends`` to export into (never the model's own folder), and the int8 files,
cached by the float weights' fingerprint and, for static int8, by the calibration sample.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrieval.encode import texts_fingerprint
from retrieval.models import load_model, model_fingerprint, resolve_model_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

ONNX_INT8_CONFIG = "avx512_vnni"
ONNX_INT8_FILE = f"onnx/model_qint8_{ONNX_INT8_CONFIG}.onnx"
ONNX_REQUIREMENT = ("optimum-onnx[onnxruntime] (pip install 'sentence-transformers[onnx]'; optimum-onnx 0.1 needs "
                    "transformers<4.58, which sentence-transformers 6 cannot use)")
OPENVINO_REQUIREMENT = "optimum-intel[openvino] (it needs transformers<5.6: .ci/openvino-env installs such an environment)"
CALIBRATION_SIZE = 300
CALIBRATION_MAX_LENGTH = 256


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


def _load_exported(name: str, device: str | None, backend: str, file_name: str | None = None,
                   fingerprint: str | None = None, **kwargs) -> SentenceTransformer:
    """``backend`` model from the export folder; ``fingerprint`` of the float weights, if known, saves a load."""
    from sentence_transformers import SentenceTransformer

    fingerprint = fingerprint or model_fingerprint(load_model(name, device="cpu", **kwargs))
    folder = _export_dir(name, fingerprint)
    options = {"model_kwargs": {"file_name": file_name}} if file_name else {}
    model = SentenceTransformer(str(folder), device=device or "cpu", backend=backend, **options)
    if kwargs.get("max_seq_length"):
        model.max_seq_length = kwargs["max_seq_length"]
    if not (folder / backend).exists():
        model.save_pretrained(str(folder))  # keep the export: the next load skips it
    model._retrieval_fingerprint = fingerprint
    return model


def load_onnx(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    _require("optimum.onnxruntime", ONNX_REQUIREMENT)
    return _load_exported(name, device, "onnx", **kwargs)


def load_onnx_int8(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    _require("optimum.onnxruntime", ONNX_REQUIREMENT)
    from sentence_transformers import export_dynamic_quantized_onnx_model

    model = load_onnx(name, device, **kwargs)
    folder = _export_dir(name, model._retrieval_fingerprint)
    if not (folder / ONNX_INT8_FILE).exists():
        export_dynamic_quantized_onnx_model(model, ONNX_INT8_CONFIG, str(folder))
    return _load_exported(name, device, "onnx", ONNX_INT8_FILE, model._retrieval_fingerprint, **kwargs)


def load_openvino(name: str, device: str | None, **kwargs) -> SentenceTransformer:
    _require("optimum.intel.openvino", OPENVINO_REQUIREMENT)
    return _load_exported(name, device, "openvino", **kwargs)


def calibration_sample(texts: list[str], n: int = CALIBRATION_SIZE, seed: int = 0) -> list[str]:
    """A seeded sample of the texts to be encoded, to calibrate static int8 quantisation on."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(texts), size=min(n, len(texts)), replace=False) if texts else []
    return [texts[i] for i in sorted(picked)]


def load_openvino_int8(name: str, device: str | None, calibration_texts: list[str] | None = None,
                        **kwargs) -> SentenceTransformer:
    """Static int8 OpenVINO; the quantised file is cached per calibration sample.

    Activations are quantised with ranges measured on ``calibration_texts`` (NNCF's default
    recipe: SmoothQuant + fast bias correction), so the texts should look like what will be
    encoded: ``retrieval index build`` passes :func:`calibration_sample` of the corpus.
    """
    _require("optimum.intel.openvino", OPENVINO_REQUIREMENT)
    if not calibration_texts:
        raise ValueError("openvino-int8 needs calibration_texts (a sample of the texts to encode)")
    fingerprint = model_fingerprint(load_model(name, device="cpu", **kwargs))  # loaded once, reused below
    folder = _export_dir(name, fingerprint)
    file_name = f"openvino/openvino_model_qint8_{texts_fingerprint(calibration_texts)}.xml"
    if not (folder / file_name).exists():
        _quantize_openvino(_load_exported(name, device, "openvino", None, fingerprint, **kwargs), calibration_texts,
                           folder / file_name)
    return _load_exported(name, device, "openvino", file_name, fingerprint, **kwargs)


def _quantize_openvino(model: SentenceTransformer, texts: list[str], target: Path) -> None:
    import datasets
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer

    max_length = min(CALIBRATION_MAX_LENGTH, model.max_seq_length or CALIBRATION_MAX_LENGTH)
    tokens = model.tokenizer(texts, padding="max_length", max_length=max_length, truncation=True)
    calibration = datasets.Dataset.from_dict(dict(tokens))
    quantizer = OVQuantizer.from_pretrained(model.transformers_model)
    tmp = target.parent.parent / f"quantize.tmp-{os.getpid()}"
    config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(texts)))
    quantizer.quantize(calibration_dataset=calibration, save_directory=str(tmp), ov_config=config)
    # The .bin is found beside the .xml by stem, so both are renamed together; the .xml last,
    # because its presence is what marks the export as done.
    os.replace(tmp / "openvino" / "openvino_model.bin", target.with_suffix(".bin"))
    os.replace(tmp / "openvino" / "openvino_model.xml", target)
    shutil.rmtree(tmp, ignore_errors=True)
