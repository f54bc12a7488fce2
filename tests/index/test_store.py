"""Index build, save, load: exact answers against brute force, refusal of wrong pairings, damage detection."""

from __future__ import annotations

import numpy as np
import pytest

from index import IndexIntegrityError, IndexMeta, IndexMismatchError, build_index, load_index, save_index
from index.build import normalize


def _meta(n: int, dim: int = 16, **kw) -> IndexMeta:
    base = dict(model="m", model_fingerprint="fp-model", dim=dim, doc_ids=[f"d{i}" for i in range(n)],
                corpus_fingerprint="fp-corpus")
    base.update(kw)
    return IndexMeta(**base)


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)


def test_flat_search_equals_brute_force_cosine(vectors, tmp_path):
    stored = save_index(tmp_path / "idx", build_index(vectors), _meta(200), vectors)
    queries = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    ids, scores = stored.search(queries, k=10)
    expected = normalize(queries) @ normalize(vectors).T
    for row, (got_ids, got_scores) in enumerate(zip(ids, scores)):
        order = np.argsort(-expected[row])[:10]
        assert got_ids == [f"d{j}" for j in order]
        np.testing.assert_allclose(got_scores, expected[row][order], rtol=1e-5)


def test_round_trip_keeps_index_and_metadata(vectors, tmp_path):
    save_index(tmp_path / "idx", build_index(vectors), _meta(200, query_prompt="q: "), vectors)
    loaded = load_index(tmp_path / "idx", expect={"model_fingerprint": "fp-model", "corpus_fingerprint": "fp-corpus"})
    assert len(loaded) == 200
    assert loaded.meta.query_prompt == "q: "
    assert loaded.meta.doc_ids[:2] == ["d0", "d1"]
    np.testing.assert_allclose(loaded.embeddings(), normalize(vectors), rtol=1e-6)


def test_planted_vector_is_its_own_nearest_neighbour(vectors, tmp_path):
    stored = save_index(tmp_path / "idx", build_index(vectors), _meta(200))
    ids, scores = stored.search(vectors[[42]] * 3.0, k=1)  # scale must not matter after normalisation
    assert ids == [["d42"]]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_loading_with_another_model_or_corpus_is_refused_and_says_what_differs(vectors, tmp_path):
    save_index(tmp_path / "idx", build_index(vectors), _meta(200))
    with pytest.raises(IndexMismatchError, match="model_fingerprint.*fp-model.*other") as err:
        load_index(tmp_path / "idx", expect={"model_fingerprint": "other"})
    with pytest.raises(IndexMismatchError, match="corpus_fingerprint"):
        load_index(tmp_path / "idx", expect={"corpus_fingerprint": "x", "model_fingerprint": "fp-model"})
    assert "corpus" not in str(err.value)


@pytest.mark.parametrize("factory", ["HNSW16", "IVF4,Flat", "IVF4,PQ4x4", "OPQ4,IVF4,PQ4x4"])
def test_other_factory_strings_build_and_search(tmp_path, factory):
    vectors = np.random.default_rng(0).normal(size=(1200, 16)).astype(np.float32)  # OPQ trains 256 centroids
    save_index(tmp_path / "idx", build_index(vectors, factory), _meta(1200, factory=factory))
    loaded = load_index(tmp_path / "idx", expect={"factory": factory})
    ids, _ = loaded.search(vectors[:3], k=5)
    assert all(len(row) == 5 for row in ids)


def test_bad_factory_string_is_a_clear_error(vectors):
    with pytest.raises(ValueError, match="cannot build index type 'NotAnIndex'"):
        build_index(vectors, "NotAnIndex")


def test_truncated_index_file_is_detected(vectors, tmp_path):
    save_index(tmp_path / "idx", build_index(vectors), _meta(200), vectors)
    path = tmp_path / "idx" / "index.faiss"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexIntegrityError, match="index.faiss: checksum"):
        load_index(tmp_path / "idx")


def test_save_replaces_an_existing_index_whole(vectors, tmp_path):
    save_index(tmp_path / "idx", build_index(vectors), _meta(200))
    save_index(tmp_path / "idx", build_index(vectors[:50]), _meta(50))
    assert len(load_index(tmp_path / "idx")) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary or old copies left behind


def test_too_few_vectors_to_train_is_a_clear_error(vectors):
    with pytest.raises(ValueError, match="FAISS cannot train .IVF4,PQ8. on 200 vectors"):
        build_index(vectors, "IVF4,PQ8")


def test_doc_id_count_must_match_vectors(vectors, tmp_path):
    with pytest.raises(ValueError, match="200 vectors but meta lists 10"):
        save_index(tmp_path / "idx", build_index(vectors), _meta(10))


def test_embeddings_saved_from_memory_mapped_blocks_equal_one_array(vectors, tmp_path, monkeypatch):
    import index.store

    monkeypatch.setattr(index.store, "WRITE_CHUNK", 7)  # several chunks per block, one spanning none evenly
    blocks = []
    for i, (lo, hi) in enumerate([(0, 50), (50, 130), (130, 200)]):
        mm = np.lib.format.open_memmap(tmp_path / f"b{i}.npy", mode="w+", dtype=np.float32, shape=(hi - lo, 16))
        mm[:] = vectors[lo:hi]
        blocks.append(np.load(tmp_path / f"b{i}.npy", mmap_mode="r"))
    whole = save_index(tmp_path / "whole", build_index(vectors), _meta(200), vectors)
    pieces = save_index(tmp_path / "pieces", build_index(vectors), _meta(200), blocks)
    assert (tmp_path / "whole" / "embeddings.npy").read_bytes() == (tmp_path / "pieces" / "embeddings.npy").read_bytes()
    assert pieces.meta.files == whole.meta.files
    np.testing.assert_allclose(load_index(tmp_path / "pieces").embeddings(), normalize(vectors), rtol=1e-6)
    with pytest.raises(ValueError, match="199 rows"):
        save_index(tmp_path / "short", build_index(vectors), _meta(200), blocks[:2] + [blocks[2][:-1]])
    assert not (tmp_path / "short").exists()
