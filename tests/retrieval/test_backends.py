"""Encoding backends give the plain model's vectors (within their precision) and are recorded in the index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.backends import BACKENDS, backend_context, encode_with_backend, load_model_with_backend
from retrieval.encode import encode

TEXTS = ["cats purr and sleep on warm windows", "the moon orbits the earth every month", "fish swim in rivers"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture
def reference(tiny_model):
    return encode(tiny_model, TEXTS, progress=False)


@pytest.mark.parametrize("backend,min_cosine", [("torch", 0.99999), ("torch-bf16", 0.99), ("torch-int8", 0.95)])
def test_torch_backends_reproduce_the_float32_vectors(tiny_model_path, reference, backend, min_cosine):
    model = load_model_with_backend(str(tiny_model_path), backend)
    vectors = encode_with_backend(model, TEXTS, progress=False)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    assert cosines(vectors, reference).min() >= min_cosine


def test_bf16_runs_under_autocast_and_plain_torch_does_not(tiny_model_path):
    import torch

    model = load_model_with_backend(str(tiny_model_path), "torch-bf16")
    with backend_context(model):
        assert torch.is_autocast_enabled("cpu")
    with backend_context(model, "torch"):
        assert not torch.is_autocast_enabled("cpu")


def test_a_corpus_encodes_on_bf16_weights_and_the_float32_weights_come_back_bit_for_bit(tiny_model, reference):
    """bulk_context casts the weights (no autocast inside) and restores the very float32 tensors, even after an error."""
    import torch

    from retrieval.backends import bulk_context

    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    with bulk_context(tiny_model, "torch-bf16"):
        assert {p.dtype for p in tiny_model.parameters()} == {torch.bfloat16}
        assert not torch.is_autocast_enabled("cpu")
        vectors = encode(tiny_model, TEXTS, progress=False)
    assert vectors.dtype == np.float32 and cosines(vectors, reference).min() >= 0.99
    autocast = encode_with_backend(tiny_model, TEXTS, progress=False, backend="torch-bf16")
    assert not np.array_equal(vectors, autocast)  # a different computation from autocast's, as fast as bf16 allows
    with pytest.raises(RuntimeError), bulk_context(tiny_model, "torch-bf16"):
        raise RuntimeError("encoding failed")
    for name, p in tiny_model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[name]), name
    np.testing.assert_array_equal(encode(tiny_model, TEXTS, progress=False), reference)
    with bulk_context(tiny_model, "torch"):  # other backends: their usual context
        assert {p.dtype for p in tiny_model.parameters()} == {torch.float32}


def test_fast_backends_keep_the_float_weights_fingerprint(tiny_model_path, tiny_model):
    from retrieval.models import model_fingerprint

    for backend in ("torch-bf16", "torch-int8"):
        assert model_fingerprint(load_model_with_backend(str(tiny_model_path), backend)) == model_fingerprint(tiny_model)


def test_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="torch-bf16"):
        load_model_with_backend("x", "tpu")


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_backends_reproduce_the_float32_vectors(tiny_model_path, reference, backend, monkeypatch, tmp_path):
    pytest.importorskip("optimum.onnxruntime", reason="optimum-onnx[onnxruntime] not installed (it pins transformers<4.58)")
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    model = load_model_with_backend(str(tiny_model_path), backend)
    assert cosines(encode_with_backend(model, TEXTS, progress=False), reference).min() >= 0.95


def test_openvino_backend_reproduces_the_float32_vectors(tiny_model_path, reference, monkeypatch, tmp_path):
    pytest.importorskip("optimum.intel.openvino", reason="optimum-intel[openvino] not installed")
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    model = load_model_with_backend(str(tiny_model_path), "openvino")
    assert cosines(encode_with_backend(model, TEXTS, progress=False), reference).min() >= 0.99


CORPUS = [f"document {i} about {topic} and {other}" for i, (topic, other) in
          enumerate(zip(["cats", "moons", "rivers", "proteins", "genes"] * 8, ["sleep", "orbits", "fish", "folds", "cells"] * 8))]


def test_openvino_int8_is_calibrated_on_the_given_texts_and_cached_per_sample(tiny_model_path, reference, monkeypatch,
                                                                               tmp_path):
    pytest.importorskip("optimum.intel.openvino", reason="optimum-intel[openvino] not installed")
    from retrieval.backend_exports import calibration_sample

    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="calibration"):
        load_model_with_backend(str(tiny_model_path), "openvino-int8")
    sample = calibration_sample(CORPUS, n=16)
    assert sample == calibration_sample(CORPUS, n=16) and len(set(sample)) == 16
    model = load_model_with_backend(str(tiny_model_path), "openvino-int8", calibration_texts=sample)
    vectors = encode_with_backend(model, TEXTS, progress=False)
    assert vectors.dtype == np.float32 and cosines(vectors, reference).min() >= 0.9
    quantized = sorted(p.name for p in (tmp_path / "cache").rglob("openvino_model_qint8_*.xml"))
    assert len(quantized) == 1
    # int8 weights make the file several times smaller than the float32 export beside it
    xml = next((tmp_path / "cache").rglob(quantized[0]))
    assert xml.with_suffix(".bin").stat().st_size < 0.5 * (xml.parent / "openvino_model.bin").stat().st_size
    load_model_with_backend(str(tiny_model_path), "openvino-int8", calibration_texts=sample)
    assert len(list((tmp_path / "cache").rglob("openvino_model_qint8_*.xml"))) == 1  # reused, not re-quantised
    load_model_with_backend(str(tiny_model_path), "openvino-int8", calibration_texts=calibration_sample(CORPUS, 8))
    assert len(list((tmp_path / "cache").rglob("openvino_model_qint8_*.xml"))) == 2  # another sample, another file
    assert not list((tmp_path / "cache").rglob("*.tmp-*")), "temporary quantisation folders left behind"


def test_cli_builds_an_openvino_int8_index_with_two_shard_workers(tiny_model_path, beir_dir, tmp_path, monkeypatch):
    pytest.importorskip("optimum.intel.openvino", reason="optimum-intel[openvino] not installed")
    from cli import main

    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    idx = tmp_path / "idx"
    assert main(["index", "build", "--data", str(beir_dir), "--model", str(tiny_model_path), "--out", str(idx),
                 "--backend", "openvino-int8", "--shards", "2", "--workers", "2"]) == 0
    assert json.loads((idx / "meta.json").read_text())["backend"] == "openvino-int8"
    assert len(list((tmp_path / "cache").rglob("openvino_model_qint8_*.xml"))) == 1


def test_cli_records_the_backend_and_refuses_to_mix_backends(tiny_model_path, beir_dir, tmp_path, capsys):
    from cli import main

    idx = tmp_path / "idx"
    args = ["index", "build", "--data", str(beir_dir), "--model", str(tiny_model_path), "--out", str(idx)]
    assert main(args + ["--backend", "torch-bf16"]) == 0
    assert json.loads((idx / "meta.json").read_text())["backend"] == "torch-bf16"
    assert main(args + ["--backend", "torch"]) == 2  # named: auto is torch-bf16 itself on a CPU with native bf16
    assert "backend" in capsys.readouterr().err
    assert main(args + ["--backend", "torch", "--overwrite"]) == 0
    assert json.loads((idx / "meta.json").read_text())["backend"] == "torch"
    capsys.readouterr()
    # The index built by a fast backend is searched with the plain model (same weights fingerprint).
    assert main(["search", "fish swim in rivers", "--index", str(idx), "--k", "1"]) == 0


def test_every_backend_is_offered_by_the_cli():
    from cli.index_cmd import BACKEND_CHOICES

    assert set(BACKEND_CHOICES) == set(BACKENDS) | {"auto"}


def test_auto_backend_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    import retrieval.backends as backends

    monkeypatch.setattr(backends, "native_bf16", lambda device=None: True)
    assert backends.auto_backend()[0] == "torch-bf16" and backends.auto_backend(precision="fp32")[0] == "torch"
    monkeypatch.setattr(backends, "native_bf16", lambda device=None: False)
    backend, why = backends.auto_backend()
    assert backend == "torch" and "float32" in why
    assert backends.auto_backend(precision="bf16")[0] == "torch-bf16"  # the flag overrides


def test_an_index_built_under_bf16_records_it_and_serves_the_same_model(tiny_model, beir_dir, tmp_path):
    from retrieval.retriever import IndexSpec, build_or_load, search
    from retrieval.sources import resolve

    ds = resolve(str(beir_dir))
    fp32 = build_or_load(tiny_model, "m", ds.corpus, tmp_path / "fp32", progress=False)
    bf16 = build_or_load(tiny_model, "m", ds.corpus, tmp_path / "bf16", IndexSpec(backend="torch-bf16"), progress=False)
    assert fp32.meta.backend == "torch" and bf16.meta.backend == "torch-bf16"
    a, b = np.asarray(fp32.vectors()), np.asarray(bf16.vectors())
    assert not np.array_equal(a, b) and np.abs((a * b).sum(1) - 1).max() < 0.01  # encoded differently, nearly the same
    # reuse ignores the backend: the fp32 folder is reused for a bf16 request rather than re-encoded
    again = build_or_load(tiny_model, "m", ds.corpus, tmp_path / "fp32", IndexSpec(backend="torch-bf16"), progress=False)
    assert again.meta.backend == "torch"
    assert search(bf16, tiny_model, ds.split_queries("test"), 5, progress=False).to_dict()
