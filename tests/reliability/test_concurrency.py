"""Search from 8 threads at once returns exactly what one thread returns.

Each worker repeats fixed batches of queries for a bounded time and compares
every answer with the single-threaded answer to the same batch (same batch
composition, so FAISS and torch take the same code path and the comparison can
be exact). Flat, HNSW and IVF indexes are searched; then the whole query path,
tokenizer and model included (``retrieval.retriever.search`` with the tiny model).
bench/soak.py runs the same check longer on SciFact.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from index import IndexMeta, build_index, load_index, save_index

THREADS = 8


def hammer(call, batches: list, expected: list, seconds: float) -> tuple[int, list[str]]:
    """Run ``call(batch)`` from THREADS threads for ``seconds``; return (calls made, mismatches)."""
    stop = time.monotonic() + seconds
    calls, problems = [0], []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(offset: int) -> None:
        start.wait()
        i = offset
        while time.monotonic() < stop:
            b = i % len(batches)
            try:
                got = call(batches[b])
                same = got == expected[b]
            except Exception as err:  # noqa: BLE001 - an exception in a thread is a finding, reported below
                got, same = repr(err), False
            with lock:
                calls[0] += 1
                if not same and len(problems) < 5:
                    problems.append(f"batch {b}: {got!r:.200}")
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return calls[0], problems


@pytest.mark.parametrize("factory, params", [("Flat", {}), ("HNSW16", {"efSearch": 32}), ("IVF16,Flat", {"nprobe": 4})])
def test_index_search_from_8_threads_equals_single_threaded(tmp_path, factory, params):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    meta = IndexMeta(model="m", model_fingerprint="f", dim=32, doc_ids=[f"d{i}" for i in range(3000)],
                     corpus_fingerprint="c", factory=factory, search_params=params)
    save_index(tmp_path / "idx", build_index(vectors, factory), meta)
    stored = load_index(tmp_path / "idx")
    queries = rng.normal(size=(96, 32)).astype(np.float32)
    batches = [queries[i : i + n] for i, n in ((0, 1), (1, 7), (8, 24), (32, 64))]  # below and above FAISS's BLAS threshold

    def call(batch):
        ids, scores = stored.search(batch, 10)
        return ids, scores.tobytes()

    expected = [call(b) for b in batches]
    calls, problems = hammer(call, batches, expected, seconds=2.0)
    assert problems == [] and calls >= THREADS


def test_full_query_path_from_8_threads_equals_single_threaded(tiny_model, tmp_path):
    from retrieval.retriever import build_or_load, search
    from tests.conftest import TOPICS

    corpus = {f"{t}{i}": {"title": t, "text": f"{s} number {i}"} for t, s in TOPICS.items() for i in range(6)}
    stored = build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)
    texts = [f"what about {t}s" for t in TOPICS] + [s for s in TOPICS.values()]
    batches = [{str(i): texts[i]} for i in range(3)] + [{str(i): texts[i] for i in range(16)}]

    def call(batch):
        run = search(stored, tiny_model, batch, k=5, progress=False).to_dict()
        return {q: sorted(docs.items(), key=lambda kv: (-kv[1], kv[0])) for q, docs in run.items()}

    expected = [call(b) for b in batches]
    calls, problems = hammer(call, batches, expected, seconds=3.0)
    assert problems == [] and calls >= THREADS
