"""Query latency of the app (encode + search, base and tuned), p50/p95 over SciFact's test queries, on CPU.

Times exactly what the Search view runs per query (``app.compute.ranked`` for each side,
then ``app.compute.hits``) against the plain library calls it wraps
(``SentenceTransformer.encode`` + ``faiss.Index.search`` per side), after a warm-up.

    python bench/app_latency.py --run RUN_DIR                 # a run written by `retrieval tune`
    python bench/app_latency.py --index /tmp/zs/indexes/all-MiniLM-L6-v2 --data ../shared/data/beir/scifact
        # no tuned run: the index's model serves as both base and "tuned"
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


def load_sides(args: argparse.Namespace):
    """``({name: (model, stored_index)}, dataset, description)`` from a run dir or a bare index."""
    from index import load_index
    from retrieval.models import load_model
    from retrieval.rundir import RunDir, read_info
    from retrieval.sources import resolve

    if args.run:
        run = RunDir(Path(args.run))
        info = read_info(run)
        if info is None:
            raise SystemExit(f"{run.run_json}: missing; create the run with `retrieval tune --data DATA --out {args.run}`")
        sides = {"base": (load_model(info["base_model"], device="cpu"), load_index(run.base_index))}
        tuned = run.tuned_model_path(info)
        if tuned is not None:
            sides["tuned"] = (load_model(str(tuned), device="cpu"), load_index(run.index_for("tuned")))
        return sides, resolve(info["data"], download=False), f"run {run.path}"
    stored = load_index(args.index)
    model = load_model(args.model or stored.meta.model, device="cpu")
    dataset = resolve(args.data or stored.meta.corpus_source, download=False)
    return {"base": (model, stored), "tuned": (model, stored)}, dataset, f"index {args.index} as base AND tuned (no tuned run)"


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="run directory written by `retrieval tune`")
    parser.add_argument("--index", default="/tmp/zs/indexes/all-MiniLM-L6-v2", help="index dir used when --run is not given")
    parser.add_argument("--model", default=None, help="model for --index (default: the one recorded in the index)")
    parser.add_argument("--data", default=None, help="dataset for --index (default: the index's corpus_source)")
    parser.add_argument("--split", default="test", help="queries timed: this split's (default: test)")
    parser.add_argument("--k", type=int, default=10, help="hits rendered per side (default: 10)")
    parser.add_argument("--limit", type=int, default=None, help="time only the first N queries (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import faiss
    import torch

    from app import compute
    from index.build import normalize

    if args.threads:
        torch.set_num_threads(args.threads)
    sides, dataset, what = load_sides(args)
    queries = list(dataset.split_queries(args.split).values())[: args.limit]
    qrels_by_text = compute.query_lookup(dataset.split_queries(args.split))

    def ours(text: str) -> None:
        rankings = {name: compute.ranked(stored, model, text) for name, (model, stored) in sides.items()}
        relevant = dataset.qrels[args.split].get(compute.match_query(text, qrels_by_text) or "", {})
        for name, ranking in rankings.items():
            compute.hits(ranking, args.k, dataset.corpus, relevant, rankings["base"] if name == "tuned" else None)

    def plain(text: str) -> None:
        for model, stored in sides.values():
            vec = model.encode([text], convert_to_numpy=True, show_progress_bar=False)
            stored.index.search(normalize(vec), compute.DEPTH)

    t0 = time.perf_counter()
    ours(queries[0])
    first = time.perf_counter() - t0
    for text in queries[:5]:  # warm-up, both paths
        ours(text), plain(text)
    timings: dict[str, list[float]] = {"ours": [], "plain": []}
    for text in queries:
        for name, fn in (("ours", ours), ("plain", plain)):
            t = time.perf_counter()
            fn(text)
            timings[name].append(time.perf_counter() - t)

    print(f"# app query latency: {what}")
    print(f"# {len(queries)} {args.split} queries, {len(dataset.corpus):,} documents, sides: {', '.join(sides)}, "
          f"torch threads {torch.get_num_threads()}, faiss threads {faiss.omp_get_max_threads()}, search depth {compute.DEPTH}")
    print(f"# first query (cold: torch + ranx/numba warm-up; the app does this while loading): {first * 1000:.0f} ms")
    print(f"{'path':<44} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    rows = {"ours": "app.compute (encode+search+hits, both sides)", "plain": "encode + faiss search, both sides"}
    stats = {name: percentiles(values) for name, values in timings.items()}
    for name, label in rows.items():
        p50, p95, mean = stats[name]
        print(f"{label:<44} {p50:>8.1f} {p95:>8.1f} {mean:>8.1f}")
    print(f"{'ratio ours/plain':<44} {stats['ours'][0] / stats['plain'][0]:>8.2f} {stats['ours'][1] / stats['plain'][1]:>8.2f} "
          f"{stats['ours'][2] / stats['plain'][2]:>8.2f}")


if __name__ == "__main__":
    main()
