"""Zero-shot reference check: BM25 and all-MiniLM-L6-v2 on a BEIR dataset (default SciFact test).

Prints nDCG@10 and Recall@100 for each system next to the published value, the
encoding throughput and the wall time of each stage. The Foundation is trusted
only while both land within tolerance (0.005 for MiniLM, 0.01 for BM25).

    python bench/zero_shot.py [--data ../shared/data/beir/scifact] [--index-dir /tmp/zs-index]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

PUBLISHED = {  # nDCG@10 on SciFact test: MTEB for MiniLM, Pyserini BM25 flat
    "all-MiniLM-L6-v2": (0.645, 0.005),
    "bm25": (0.679, 0.01),
}


def default_data() -> str:
    env = os.environ.get("RETRIEVAL_DATA")
    if env and (Path(env) / "scifact").is_dir():
        return str(Path(env) / "scifact")
    return str(Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=default_data(), help="BEIR dataset folder or name")
    parser.add_argument("--split", default="test")
    parser.add_argument("--index-dir", default=None, help="reuse an index here (default: a fresh temp dir)")
    args = parser.parse_args()

    from retrieval.bm25 import bm25_run
    from retrieval.evaluate import evaluate
    from retrieval.models import DEFAULT_MODEL, load_model
    from retrieval.retriever import build_or_load, search
    from retrieval.sources import resolve

    t0 = time.perf_counter()
    dataset = resolve(args.data)
    queries, qrels = dataset.split_queries(args.split), dataset.split(args.split)
    stages = {"load data": time.perf_counter() - t0}

    t = time.perf_counter()
    runs = {"bm25": bm25_run(dataset.corpus, queries, progress=False)}
    stages["bm25 index+search"] = time.perf_counter() - t

    model = load_model(DEFAULT_MODEL)
    index_dir = Path(args.index_dir or tempfile.mkdtemp(prefix="zs-index-"))
    t = time.perf_counter()
    stored = build_or_load(model, DEFAULT_MODEL, dataset.corpus, index_dir)
    stages["encode+index corpus"] = encode_s = time.perf_counter() - t
    t = time.perf_counter()
    runs[DEFAULT_MODEL] = search(stored, model, queries, progress=False)
    stages["encode+search queries"] = time.perf_counter() - t

    results = evaluate(qrels, runs, ["ndcg@10", "recall@100"])
    print(f"\n{dataset.describe()}; split {args.split}, {len(queries)} queries\n")
    print(f"{'system':<20} {'nDCG@10':>8} {'published':>9} {'delta':>7} {'ok':>3} {'R@100':>7}")
    for name, scores in results.items():
        ref, tol = PUBLISHED[name]
        delta = scores["ndcg@10"] - ref
        print(f"{name:<20} {scores['ndcg@10']:>8.4f} {ref:>9.3f} {delta:>+7.4f} {'yes' if abs(delta) <= tol else 'NO':>3} "
              f"{scores['recall@100']:>7.4f}")
    print(f"\nencode: {len(dataset.corpus) / encode_s:.1f} docs/s (index reused: {encode_s < 5})")
    for stage, seconds in stages.items():
        print(f"{stage:<24} {seconds:>8.1f} s")
    print(f"{'total':<24} {time.perf_counter() - t0:>8.1f} s")


if __name__ == "__main__":
    main()
