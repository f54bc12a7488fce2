"""Throughput of our InfoNCE losses against sentence-transformers' MNRL on identical batches.

Forward + backward steps per second (no optimiser step) of all-MiniLM-L6-v2 on SciFact train
(query, positive, one random other document as the hard-negative column): ours with
known-positive masking on (the default in training) vs ``MultipleNegativesRankingLoss``, and
``CachedInfoNCE`` vs ``CachedMultipleNegativesRankingLoss`` with the same mini-batch size. Each
loss sees the same pre-tokenised batches; timing is interleaved in rounds (every loss runs a
few steps per round) so that load from other processes on a shared CPU hits all of them alike.
The target is ours/theirs >= 0.95.

    python bench/loss_throughput.py [--batch-size 16] [--max-seq-length 128] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path


def default_data() -> str:
    return str(Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact")


def random_other(rng: random.Random, n_docs: int, exclude: set[int]) -> int:
    while (doc := rng.randrange(n_docs)) in exclude:
        pass
    return doc


def make_batches(dataset, model, batch_size: int, n_batches: int, seed: int):
    """Pre-tokenised (features, labels) batches and the {query_idx: {doc_idx}} table of train positives."""
    from retrieval.encode import doc_text
    import torch

    qrels = dataset.split("train")
    queries = dataset.split_queries("train")
    doc_ids = list(dataset.corpus)
    doc_index = {doc: i for i, doc in enumerate(doc_ids)}
    qids = [q for q in queries if any(s > 0 for s in qrels.get(q, {}).values())]
    positives = {i: {doc_index[d] for d, s in qrels[q].items() if s > 0 and d in doc_index} for i, q in enumerate(qids)}
    rng = random.Random(seed)
    order = rng.sample(range(len(qids)), batch_size * n_batches)
    batches = []
    for b in range(n_batches):
        rows = order[b * batch_size : (b + 1) * batch_size]
        pos = [min(positives[i]) for i in rows]
        neg = [random_other(rng, len(doc_ids), positives[i]) for i in rows]
        columns = [[queries[qids[i]] for i in rows], [doc_text(dataset.corpus[doc_ids[d]]) for d in pos],
                   [doc_text(dataset.corpus[doc_ids[d]]) for d in neg]]
        features = [model.preprocess(texts) for texts in columns]
        labels = torch.tensor([[i, p, n] for i, p, n in zip(rows, pos, neg)])
        batches.append((features, labels))
    return batches, positives


def step(model, loss, features, labels) -> None:
    model.zero_grad(set_to_none=True)
    loss([dict(f) for f in features], labels).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=default_data(), help="BEIR dataset folder or name (needs a train split)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    parser.add_argument("--max-seq-length", type=int, default=128, help="token limit of every text")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per loss")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per loss first")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds the steps are split into")
    parser.add_argument("--mini-batch-size", type=int, default=8, help="mini-batch of both cached losses")
    parser.add_argument("--only", choices=["plain", "cached"], default=None, help="time only the plain or the cached pair")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    from tqdm import tqdm
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from finetune.losses.cached_info_nce import CachedInfoNCE
    from finetune.losses.info_nce import InfoNCE
    from retrieval.models import DEFAULT_MODEL, load_model
    from retrieval.sources import resolve

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(DEFAULT_MODEL, device="cpu", max_seq_length=args.max_seq_length)
    model.train()
    batches, positives = make_batches(resolve(args.data), model, args.batch_size, args.warmup + args.steps, seed=0)
    losses = {
        "InfoNCE (masking on)": InfoNCE(model, positives=positives),
        "MNRL": MultipleNegativesRankingLoss(model, scale=20.0),
        "CachedInfoNCE": CachedInfoNCE(model, positives=positives, mini_batch_size=args.mini_batch_size),
        "CachedMNRL": CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=args.mini_batch_size),
    }
    if args.only:
        keep = {"plain": ("InfoNCE (masking on)", "MNRL"), "cached": ("CachedInfoNCE", "CachedMNRL")}[args.only]
        losses = {name: loss for name, loss in losses.items() if name in keep}
    for loss in tqdm(losses.values(), desc="warm-up", unit="loss"):
        for features, labels in batches[: args.warmup]:
            step(model, loss, features, labels)
    elapsed = dict.fromkeys(losses, 0.0)
    timed = batches[args.warmup :]
    per_round = -(-len(timed) // args.rounds)
    for start in tqdm(range(0, len(timed), per_round), desc="timing rounds"):
        for name, loss in losses.items():
            t = time.perf_counter()
            for features, labels in timed[start : start + per_round]:
                step(model, loss, features, labels)
            elapsed[name] += time.perf_counter() - t

    print(f"\n{DEFAULT_MODEL}, batch {args.batch_size} x (query, positive, negative), max_seq_length "
          f"{args.max_seq_length}, {len(timed)} timed fwd+bwd steps, torch threads {torch.get_num_threads()}\n")
    print(f"| {'loss':<22} | steps/s | pairs/s | ours/theirs |")
    print(f"|{'-' * 24}|---------|---------|-------------|")
    pairs = {"InfoNCE (masking on)": "MNRL", "CachedInfoNCE": "CachedMNRL"}
    for name, seconds in elapsed.items():
        rate = len(timed) / seconds
        ratio = f"{elapsed[pairs[name]] / seconds:11.3f}" if name in pairs else " " * 11
        print(f"| {name:<22} | {rate:7.3f} | {rate * args.batch_size:7.2f} | {ratio} |")


if __name__ == "__main__":
    main()
