"""``bench/profile_train.py --compile``: the compiled forward is the one training runs."""

from __future__ import annotations

import pytest
import torch

from tests.bench.load import load_bench_script


@pytest.fixture(scope="module")
def profile_train():
    return load_bench_script("profile_train")


def test_compile_encoder_replaces_the_forward_that_encoding_calls(profile_train, tiny_model, monkeypatch):
    """sentence-transformers 6 calls ``self.model.forward``, so compiling the module would be a silent no-op."""
    calls = []

    def fake_compile(fn, dynamic=None):
        def compiled(*args, **kwargs):
            calls.append(dynamic)
            return fn(*args, **kwargs)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    before = tiny_model.encode(["one text"], convert_to_tensor=True)
    assert calls == []
    profile_train.compile_encoder(tiny_model)
    after = tiny_model.encode(["one text"], convert_to_tensor=True)
    assert calls == [True]  # the compiled forward ran, with dynamic shapes
    assert torch.allclose(before, after)
