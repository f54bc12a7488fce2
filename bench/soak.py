"""Soak: search a real index from many threads for a while; count queries/s and any answer that differs.

Every answer is compared with the single-threaded answer to the same batch of
queries (same batch composition, so the comparison is exact). Three layers:

* ``faiss``   the plain library call, ``index.search`` on pre-encoded query vectors;
* ``stored``  our ``StoredIndex.search`` (normalisation, id mapping) on the same vectors;
* ``full``    ``retrieval.retriever.search``: tokenizer + model + index, text in, ranx Run out.

Usage (defaults: SciFact test queries, MiniLM, the index in /tmp/zs/indexes/all-MiniLM-L6-v2)::

    nice -n 10 python bench/soak.py --seconds 20 --threads 8
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def soak(call, batches: list, threads: int, seconds: float) -> dict:
    expected = [call(b) for b in batches]
    stop = time.monotonic() + seconds
    stats = {"calls": 0, "queries": 0, "mismatches": 0, "errors": 0, "first_problem": ""}
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(offset: int) -> None:
        barrier.wait()
        i = offset
        while time.monotonic() < stop:
            b = i % len(batches)
            try:
                bad, problem = call(batches[b]) != expected[b], f"batch {b} differs"
                kind = "mismatches"
            except Exception as err:  # noqa: BLE001 - counted and reported
                bad, problem, kind = True, repr(err)[:200], "errors"
            with lock:
                stats["calls"] += 1
                stats["queries"] += len(batches[b])
                if bad:
                    stats[kind] += 1
                    stats["first_problem"] = stats["first_problem"] or problem
            i += 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stats["wall_s"] = time.monotonic() - started
    stats["qps"] = stats["queries"] / stats["wall_s"]
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/beir/scifact", help="BEIR folder with the queries")
    parser.add_argument("--index", default="/tmp/zs/indexes/all-MiniLM-L6-v2", help="index directory to search")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="query model (must match the index)")
    parser.add_argument("--split", default="test", help="qrels split whose queries are searched (default: test)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent searching threads (default: 8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per layer and thread count (default: 20)")
    parser.add_argument("--batch", type=int, default=8, help="queries per search call (default: 8)")
    parser.add_argument("--k", type=int, default=100, help="hits per query (default: 100)")
    parser.add_argument("--layers", default="faiss,stored,full", help="which layers to soak (default: all three)")
    args = parser.parse_args()

    from index import load_index
    from retrieval.data import load_beir
    from retrieval.encode import encode
    from retrieval.models import load_model
    from retrieval.retriever import search

    dataset = load_beir(args.data)
    queries = dataset.split_queries(args.split)
    stored = load_index(args.index)
    model = load_model(args.model, device="cpu")
    qids = list(queries)
    vectors = encode(model, [queries[q] for q in qids], stored.meta.query_prompt, progress=False, role="query")
    from index.build import normalize

    unit = normalize(vectors)
    spans = [(i, i + args.batch) for i in range(0, len(qids), args.batch)]
    layers = {
        "faiss": (lambda s: tuple(a.tobytes() for a in stored.index.search(unit[s[0] : s[1]], args.k)), spans),
        "stored": (lambda s: (stored.search(vectors[s[0] : s[1]], args.k)[0],), spans),
        "full": (lambda s: search(stored, model, {q: queries[q] for q in qids[s[0] : s[1]]}, args.k, progress=False).to_dict(),
                 spans),
    }
    print(f"index {args.index}: {len(stored)} docs, {stored.meta.factory}; {len(qids)} {args.split} queries, "
          f"batch {args.batch}, k {args.k}, {args.seconds:g} s per row, {os.cpu_count()} CPUs")
    print(f"| layer | threads | calls | queries/s | mismatches | errors | first problem |")
    print(f"|---|---:|---:|---:|---:|---:|---|")
    for name in args.layers.split(","):
        call, batches = layers[name]
        for threads in sorted({1, args.threads}):
            s = soak(call, batches, threads, args.seconds)
            print(f"| {name} | {threads} | {s['calls']} | {s['qps']:.0f} | {s['mismatches']} | {s['errors']} | "
                  f"{s['first_problem'] or '-'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
