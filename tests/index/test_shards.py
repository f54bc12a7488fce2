"""Sharded encoding (2 processes, resumable) and per-shard IVF indexes merged: same answers as one build."""

from __future__ import annotations

import itertools
import os

import faiss
import numpy as np
import pytest

from index import build_index
from index.shards import build_sharded, merge_on_disk, read_on_disk, serve_shards, train_empty, write_blocks
from tests.conftest import TOPICS


def unique_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct short documents over the tiny model's vocabulary (distinct texts, so no tied scores)."""
    words = sorted({w for s in TOPICS.values() for w in s.split()} | set(TOPICS))
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    while len(seen) < n:
        seen.add(" ".join(rng.choice(words, size=6)))
    return sorted(seen)


def search_all(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    faiss.ParameterSpace().set_index_parameter(index, "nprobe", 4)  # = nlist: IVF search is exhaustive
    return index.search(queries, k)


@pytest.fixture
def texts() -> list[str]:
    return unique_texts(300)


def test_two_process_shards_merged_answer_like_a_single_build(tiny_model_path, texts, tmp_path):
    from sentence_transformers import SentenceTransformer

    from index.build import normalize
    from retrieval.encode import encode
    from retrieval.shard_encode import encode_shards, load_shards

    paths = encode_shards(str(tiny_model_path), texts, tmp_path / "shards", n_shards=2, workers=2)
    shards = load_shards(paths)
    assert [len(s) for s in shards] == [150, 150]

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    single_vectors = normalize(encode(model, texts, progress=False))
    np.testing.assert_allclose(np.concatenate(shards), single_vectors, atol=1e-5)

    queries = normalize(encode(model, unique_texts(20, seed=1), progress=False))
    want_scores, want_ids = search_all(build_index(single_vectors, "IVF4,Flat", normalized=False), queries)
    np.testing.assert_array_equal(want_ids, faiss.knn(queries, single_vectors, 10, faiss.METRIC_INNER_PRODUCT)[1])

    merged = build_sharded("IVF4,Flat", shards, tmp_path / "blocks")
    trained = train_empty("IVF4,Flat", shards)
    on_disk = read_on_disk(merge_on_disk(trained, write_blocks(trained, shards, tmp_path / "b2"), tmp_path / "merged"))
    served = serve_shards([faiss.read_index(str(p)) for p in sorted((tmp_path / "b2").glob("block_*.index"))])
    for index in (merged, on_disk):
        assert index.ntotal == len(texts)
        scores, ids = search_all(index, queries)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    for shard in (served.at(0), served.at(1)):
        faiss.ParameterSpace().set_index_parameter(shard, "nprobe", 4)
    scores, ids = served.search(queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_resume_keeps_finished_shards_and_redoes_broken_ones(tiny_model_path, texts, tmp_path, monkeypatch):
    from retrieval import shard_encode

    folder = tmp_path / "shards"
    paths = shard_encode.encode_shards(str(tiny_model_path), texts, folder, n_shards=3)
    before = [np.load(p) for p in paths]
    mtimes = {p.name: p.stat().st_mtime_ns for p in paths}

    # A crash mid-shard leaves a .partial file and no final file; a damaged final file has the wrong rows.
    paths[2].unlink()
    (folder / f".{paths[2].name}.partial").write_bytes(b"half a shard")
    np.save(paths[1], before[1][:10])
    calls = []
    real = shard_encode.encode_shard
    monkeypatch.setattr(shard_encode, "encode_shard", lambda model, t, path, *a, **k: calls.append(path.name) or real(model, t, path, *a, **k))

    again = shard_encode.encode_shards(str(tiny_model_path), texts, folder, n_shards=3)
    assert sorted(calls) == [paths[1].name, paths[2].name]
    assert again[0].stat().st_mtime_ns == mtimes[paths[0].name]
    assert not (folder / f".{paths[2].name}.partial").exists()
    for path, old in zip(again, before):
        np.testing.assert_allclose(np.load(path), old, atol=1e-6)

    calls.clear()
    shard_encode.encode_shards(str(tiny_model_path), texts, folder, n_shards=3)
    assert calls == []


def test_shard_folder_of_another_encoding_is_refused(tiny_model_path, texts, tmp_path):
    from retrieval.shard_encode import encode_shards

    encode_shards(str(tiny_model_path), texts[:40], tmp_path / "s", n_shards=2)
    with pytest.raises(ValueError, match="prompt"):
        encode_shards(str(tiny_model_path), texts[:40], tmp_path / "s", n_shards=2, prompt="passage: ")


def test_shard_bounds_cover_every_row_once():
    from retrieval.shard_encode import shard_bounds

    for n, k in itertools.product((0, 1, 7, 100), (1, 2, 3, 8)):
        bounds = shard_bounds(n, k)
        assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


def test_sharded_build_needs_an_ivf_index():
    with pytest.raises(ValueError, match="IVF"):
        train_empty("HNSW32", [np.zeros((10, 8), dtype=np.float32)])


def test_on_disk_index_folder_can_be_moved(tmp_path):
    rng = np.random.default_rng(0)
    shards = [rng.standard_normal((400, 16)).astype(np.float32) for _ in range(2)]
    trained = train_empty("IVF4,Flat", shards)
    merge_on_disk(trained, write_blocks(trained, shards, tmp_path / "blocks"), tmp_path / "a")
    os.rename(tmp_path / "a", tmp_path / "b")
    index = read_on_disk(tmp_path / "b" / "index.faiss")
    faiss.ParameterSpace().set_index_parameter(index, "nprobe", 4)
    _, ids = index.search(shards[1][:5], 1)
    assert ids[:, 0].tolist() == list(range(400, 405))


@pytest.mark.parametrize("factory", ["IVF2,Flat", "Flat"])
def test_cli_sharded_build_answers_like_the_plain_build(tiny_model_path, tmp_path, factory):
    from index import load_index
    from cli import main
    from tests.conftest import make_beir

    data = make_beir(tmp_path / "data", n_per_topic=12)
    base = ["index", "build", "--data", str(data), "--model", str(tiny_model_path), "--factory", factory,
            "--target-recall", "1.0"]
    assert main(base + ["--out", str(tmp_path / "plain")]) == 0
    assert main(base + ["--shards", "2", "--out", str(tmp_path / "sharded")]) == 0
    assert len(list((tmp_path / "sharded.shards").glob("shard-*.npy"))) == 2
    plain, sharded = load_index(tmp_path / "plain"), load_index(tmp_path / "sharded")
    assert sharded.meta.doc_ids == plain.meta.doc_ids
    np.testing.assert_allclose(np.asarray(sharded.vectors()), np.asarray(plain.vectors()), atol=1e-5)
    for index in (plain, sharded):
        if factory.startswith("IVF"):
            faiss.ParameterSpace().set_index_parameter(index.index, "nprobe", 2)
    q = np.asarray(plain.vectors())[::7] + 0.01
    assert sharded.search(q, 5)[0] == plain.search(q, 5)[0]


@pytest.mark.parametrize("bf16_here", [False, True])  # both sides resolve --backend auto alike on either hardware
def test_torchrun_ranks_each_write_their_shards_and_the_cli_then_only_indexes(tiny_model_path, tmp_path, monkeypatch,
                                                                              bf16_here):
    from cli import main, shard_worker
    from retrieval import backends, shard_encode

    monkeypatch.setattr(backends, "native_bf16", lambda device=None: bf16_here)
    from tests.conftest import make_beir

    data = make_beir(tmp_path / "data", n_per_topic=12)
    folder = tmp_path / "shards"
    argv = ["--data", str(data), "--model", str(tiny_model_path), "--out", str(folder), "--shards", "3"]
    for rank in (0, 1):  # what `torchrun --nproc-per-node 2 -m cli.shard_worker ...` starts
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert shard_worker.main(argv) == 0
    assert len(list(folder.glob("shard-*.npy"))) == 3
    monkeypatch.setattr(shard_encode, "encode_shard", lambda *a, **k: pytest.fail("a finished shard was re-encoded"))
    assert main(["index", "build", "--data", str(data), "--model", str(tiny_model_path), "--factory", "IVF2,Flat",
                 "--shards", "3", "--shard-dir", str(folder), "--out", str(tmp_path / "idx")]) == 0
