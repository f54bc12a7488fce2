"""Dense retrieval with a tiny model: planted documents are found, indexes are reused, wrong models refused."""

from __future__ import annotations

import pytest

from index import IndexMismatchError
from retrieval import retriever
from retrieval.bm25 import bm25_run
from retrieval.data import load_beir
from retrieval.retriever import IndexSpec, build_or_load, search


def test_query_equal_to_a_document_finds_it_first(tiny_model, beir_dir, tmp_path):
    corpus = load_beir(beir_dir).corpus
    stored = build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)
    doc = corpus["moon2"]
    run = search(stored, tiny_model, {"q": f"{doc['title']} {doc['text']}"}, k=3, progress=False).to_dict()
    best = max(run["q"], key=run["q"].get)
    assert best == "moon2" and run["q"][best] == pytest.approx(1.0, abs=1e-4)


def test_matching_index_is_reused_without_encoding(tiny_model, beir_dir, tmp_path, monkeypatch):
    corpus = load_beir(beir_dir).corpus
    build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)
    monkeypatch.setattr(retriever, "encode", lambda *a, **k: pytest.fail("re-encoded a corpus whose index exists"))
    assert len(build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)) == 24


def test_changed_corpus_or_prompt_rebuilds_or_is_refused(tiny_model, beir_dir, tmp_path):
    corpus = load_beir(beir_dir).corpus
    build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)
    smaller = dict(list(corpus.items())[:10])
    with pytest.raises(IndexMismatchError, match="corpus_fingerprint"):
        build_or_load(tiny_model, "tiny", smaller, tmp_path / "idx", rebuild=False, progress=False)
    with pytest.raises(IndexMismatchError, match="document_prompt"):
        build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", IndexSpec(document_prompt="passage: "),
                      rebuild=False, progress=False)
    assert len(build_or_load(tiny_model, "tiny", smaller, tmp_path / "idx", progress=False)) == 10


def test_search_with_another_model_is_refused(tiny_model, beir_dir, tmp_path):
    import torch

    corpus = load_beir(beir_dir).corpus
    stored = build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)
    with torch.no_grad():
        next(tiny_model.parameters()).add_(0.01)
    from retrieval.models import forget_fingerprints

    forget_fingerprints(tiny_model)
    with pytest.raises(IndexMismatchError, match="weights"):
        search(stored, tiny_model, {"q": "cats"}, progress=False)


def test_bm25_ranks_the_document_sharing_rare_terms_first(beir_dir):
    corpus = load_beir(beir_dir).corpus
    run = bm25_run(corpus, {"q": "plasma star", "empty": "the and of"}, k=5, progress=False).to_dict()
    assert max(run["q"], key=run["q"].get).startswith("sun")
    assert run.get("empty", {}) == {}  # stopwords only: no scores, no arbitrary documents
