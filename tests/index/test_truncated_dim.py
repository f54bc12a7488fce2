"""Matryoshka-truncated indexes: renormalised prefixes, the same cut for queries, refused for untrained widths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import IndexMeta, build_index, load_index, save_index
from index.build import truncate
from index.meta import IndexIntegrityError, IndexMismatchError


def test_truncation_renormalises_and_equals_a_manual_slice_and_normalise():
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    cut = truncate(x, 4)
    assert cut.shape == (5, 4) and cut.dtype == np.float32 and cut.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, rtol=1e-6)
    manual = x[:, :4] / np.linalg.norm(x[:, :4], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, manual, rtol=1e-6)
    np.testing.assert_allclose(truncate(x, 12), x, rtol=1e-6)
    assert not np.shares_memory(cut, x)
    np.testing.assert_array_equal(truncate(np.zeros((2, 6)), 3), np.zeros((2, 3)))  # zero rows stay zero
    for bad in (0, 13, 2.0, True):
        with pytest.raises(ValueError):
            truncate(x, bad)


def _meta(n: int, dim: int, truncate_dim: int | None) -> IndexMeta:
    return IndexMeta(model="m", model_fingerprint="f", dim=dim, doc_ids=[f"d{i}" for i in range(n)],
                     corpus_fingerprint="c", truncate_dim=truncate_dim)


def test_a_truncated_index_cuts_full_width_queries_like_its_documents(tmp_path):
    rng = np.random.default_rng(1)
    docs, queries = rng.normal(size=(20, 16)).astype(np.float32), rng.normal(size=(3, 16)).astype(np.float32)
    stored = save_index(tmp_path / "idx", build_index(truncate(docs, 6), normalized=False), _meta(20, 6, 6))
    stored = load_index(tmp_path / "idx")
    assert stored.meta.truncate_dim == 6 and json.loads((tmp_path / "idx" / "meta.json").read_text())["truncate_dim"] == 6
    full_ids, full_scores = stored.search(queries, 5)
    cut_ids, cut_scores = stored.search(truncate(queries, 6), 5)
    assert full_ids == cut_ids
    np.testing.assert_allclose(full_scores, cut_scores, rtol=1e-6)
    expected = np.argsort(-(truncate(queries, 6) @ truncate(docs, 6).T), axis=1)[:, :5]
    assert full_ids == [[f"d{i}" for i in row] for row in expected]
    with pytest.raises(IndexMismatchError, match="truncate_dim"):
        load_index(tmp_path / "idx", expect={"truncate_dim": None})


def test_an_untruncated_index_still_refuses_wider_queries_and_older_meta_loads(tmp_path):
    docs = np.random.default_rng(2).normal(size=(8, 6)).astype(np.float32)
    save_index(tmp_path / "idx", build_index(docs), _meta(8, 6, None))
    raw = json.loads((tmp_path / "idx" / "meta.json").read_text())
    raw.pop("truncate_dim")  # as written before the field existed
    (tmp_path / "idx" / "meta.json").write_text(json.dumps(raw))
    stored = load_index(tmp_path / "idx", expect={"truncate_dim": None, "dim": 6})
    assert stored.meta.truncate_dim is None
    with pytest.raises(IndexMismatchError, match="dimension 16"):
        stored.search(np.ones((1, 16), dtype=np.float32), 2)


def test_meta_whose_truncate_dim_disagrees_with_dim_is_refused(tmp_path):
    docs = np.random.default_rng(3).normal(size=(8, 6)).astype(np.float32)
    save_index(tmp_path / "idx", build_index(docs), _meta(8, 6, 4))
    with pytest.raises(IndexIntegrityError, match="truncate_dim"):
        load_index(tmp_path / "idx")


# --- the command line ------------------------------------------------------------------------------------------

def _build(beir_dir, model, out, *extra) -> list[str]:
    """float32 (not --backend auto, bf16 on a CPU that has it) so the vectors compare with plain encode's."""
    return ["index", "build", "--data", str(beir_dir), "--model", str(model), "--out", str(out), "--backend", "torch",
            *extra]


def test_index_build_refuses_a_width_the_model_was_not_trained_for(tiny_model_path, beir_dir, tmp_path, capsys):
    from cli import main

    assert main(_build(beir_dir, tiny_model_path, tmp_path / "a", "--dim", "16")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # one line (progress bars of the model load above it)
    assert err.startswith("error: --dim 16") and "matryoshka.json" in err and "--force-dim" in err
    assert not (tmp_path / "a" / "meta.json").exists()
    (tiny_model_path / "matryoshka.json").write_text(json.dumps({"matryoshka_dims": [32, 8]}))
    assert main(_build(beir_dir, tiny_model_path, tmp_path / "a", "--dim", "16")) == 2
    assert "trained for 32,8" in capsys.readouterr().err
    assert main(_build(beir_dir, tiny_model_path, tmp_path / "a", "--dim", "64", "--force-dim")) == 2
    assert "32 dimensions" in capsys.readouterr().err


def test_index_build_with_force_or_a_record_truncates_and_search_cuts_the_queries(tiny_model_path, beir_dir, tmp_path,
                                                                                  capsys):
    from cli import main
    from retrieval.data import load_beir
    from retrieval.encode import doc_texts, encode
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load, search

    forced = tmp_path / "forced"
    assert main(_build(beir_dir, tiny_model_path, forced, "--dim", "16", "--force-dim")) == 0
    meta = json.loads((forced / "meta.json").read_text())
    assert meta["dim"] == 16 and meta["truncate_dim"] == 16
    model, corpus = load_model(str(tiny_model_path)), load_beir(beir_dir).corpus
    stored = load_index(forced)
    full = encode(model, doc_texts(corpus, stored.meta.doc_ids), progress=False)
    np.testing.assert_allclose(stored.vectors(), truncate(full, 16), rtol=1e-4, atol=1e-6)

    (tiny_model_path / "matryoshka.json").write_text(json.dumps({"matryoshka_dims": [32, 16, 8]}))
    trained = tmp_path / "trained"
    assert main(_build(beir_dir, tiny_model_path, trained, "--dim", "8")) == 0
    assert json.loads((trained / "meta.json").read_text())["truncate_dim"] == 8
    assert main(_build(beir_dir, tiny_model_path, trained, "--dim", "8")) == 0  # same settings: reused
    assert main(_build(beir_dir, tiny_model_path, trained)) == 2  # full width over a truncated one: a mismatch
    capsys.readouterr()

    queries = {"q1": "fish swim in rivers", "q2": "the moon orbits"}
    run = search(load_index(trained), model, queries, k=3, progress=False)
    vectors = truncate(encode(model, list(queries.values()), role="query", progress=False), 8)
    expected = np.argsort(-(vectors @ truncate(full, 8).T), axis=1)[:, :3]
    assert [list(run.to_dict()[q]) for q in queries] == [[stored.meta.doc_ids[i] for i in row] for row in expected]
    assert main(["search", "fish swim in rivers", "--index", str(trained), "--k", "2"]) == 0

    # the library path: IndexSpec(dim=...) builds the same truncated index
    again = build_or_load(model, str(tiny_model_path), corpus, tmp_path / "lib", IndexSpec(dim=8), progress=False)
    assert again.meta.truncate_dim == 8 and again.meta.dim == 8
    np.testing.assert_allclose(again.vectors(), load_index(trained).vectors(), rtol=1e-4, atol=1e-6)
