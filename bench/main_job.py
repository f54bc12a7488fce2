"""The main job's stages, timed, beside the plain sentence-transformers equivalent in the same run.

Ours: ``retrieval tune --data DATA`` (defaults, geometry off unless ``--geometry``), each
stage's wall time from the job's own timers (``run.json`` settings.seconds, the fine-tuning
stages included). Plain: what a user would write with the library alone for the same result,
on the same training queries, the same mined negatives (as many per query as ours,
``--num-negatives``) and the same number of steps, in the same precision (bf16 autocast where the
CPU has native bf16, as ours picks): ``SentenceTransformer.encode`` of the corpus +
``faiss.IndexFlatIP`` search of the test queries (the base system), ``SentenceTransformerTrainer``
+ ``MultipleNegativesRankingLoss`` (as many epochs as ours, lr 3e-5, batch 32, ``no_duplicates``), then
re-encoding the corpus and searching again, scored with ranx. Both run in this process, one after the other, on the same machine, so the ratio
is meaningful even where the absolute seconds are not (a shared 2-core machine).

    python bench/main_job.py --data ../shared/data/beir/scifact --work /tmp/main-job
    python bench/main_job.py --data ~/.cache/retrieval/datasets/manpages --work /tmp/main-job

Prints one table (stage, ours s, plain s, ratio) and the nDCG@10 each side reached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def ours(data: str, out: Path, geometry: bool) -> dict:
    from finetune.config import FinetuneConfig
    from jobs.tune import TuneOptions, tune

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = tune(TuneOptions(data=data, out=out, config=FinetuneConfig(), geometry=geometry))
    total = time.perf_counter() - start
    settings = json.loads((out / "run.json").read_text())["settings"]
    inner = settings["seconds"]
    return {"total": total, "stages": inner, "tuned_ndcg": result["metrics"]["tuned"]["ndcg@10"],
            "base_ndcg": result["metrics"]["base"]["ndcg@10"], "pairs": settings.get("mining", {}).get("queries")}


def plain(data: str, out: Path) -> dict:
    """The library-only recipe, timed stage by stage."""
    import faiss
    import numpy as np
    from datasets import Dataset as HFDataset
    from ranx import Qrels, Run, evaluate
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from finetune.config import FinetuneConfig
    from finetune.dev_split import dev_split
    from finetune.negatives import MiningConfig, mine_hard_negatives
    from finetune.pairs import train_queries
    from retrieval.encode import doc_text
    from retrieval.models import resolve_model_path
    from retrieval.sources import resolve

    import contextlib

    import torch

    from finetune.config import precision_flags

    seconds: dict[str, float] = {}
    flags = precision_flags("auto")
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if flags["bf16"] else contextlib.nullcontext

    def timed(name, fn, *args, autocast_it: bool = True, **kwargs):
        start = time.perf_counter()
        with autocast() if autocast_it else contextlib.nullcontext():
            value = fn(*args, **kwargs)
        seconds[name] = time.perf_counter() - start
        return value

    config = FinetuneConfig()
    dataset = timed("load data", resolve, data)
    model = timed("load model", SentenceTransformer, resolve_model_path(config.base), device="cpu")
    ids = list(dataset.corpus)
    texts = [doc_text(dataset.corpus[i]) for i in ids]
    test, test_queries = dataset.split("test"), dataset.split_queries("test")
    qids = list(test_queries)

    def index_and_score(name: str) -> float:
        docs = timed(f"encode corpus ({name})", model.encode, texts, batch_size=64, normalize_embeddings=True,
                     convert_to_numpy=True)
        index = faiss.IndexFlatIP(docs.shape[1])
        index.add(np.asarray(docs, dtype=np.float32))
        start = time.perf_counter()
        vectors = model.encode([test_queries[q] for q in qids], batch_size=64, normalize_embeddings=True)
        scores, rows = index.search(np.asarray(vectors, dtype=np.float32), 100)
        run = Run.from_dict({q: {ids[r]: float(s) for s, r in zip(srow, rrow) if r >= 0}
                             for q, srow, rrow in zip(qids, scores, rows)})
        ndcg = float(evaluate(Qrels.from_dict(test), run, "ndcg@10", make_comparable=True))
        seconds[f"search + score ({name})"] = time.perf_counter() - start
        return index, docs, ndcg

    index, docs, base_ndcg = index_and_score("base")
    # the same training queries and mined negative as ours (mining is ours: the library has no dev split)
    queries = train_queries(dataset, dev_split(dataset, fraction=config.dev_fraction, seed=config.seed).train)

    def mine():
        from index import IndexMeta, StoredIndex

        stored = StoredIndex(index=index, meta=IndexMeta(model=config.base, model_fingerprint="", dim=docs.shape[1],
                                                         doc_ids=ids, corpus_fingerprint=""))
        vectors = model.encode(queries.texts, batch_size=64, normalize_embeddings=True)
        return mine_hard_negatives(stored, vectors, queries.qids, queries.qrels(),
                                   MiningConfig(rank_start=config.rank_start, rank_end=config.rank_end,
                                                margin=config.margin, num_negatives=config.num_negatives,
                                                seed=config.seed),
                                   dataset.queries, dataset.corpus)

    mined = timed("mine negatives", mine)
    k = config.num_negatives  # the library's recipe keeps only queries with all k negatives (ours: in-batch for the rest)
    rows = {"anchor": [], "positive": [], **{f"negative_{n + 1}": [] for n in range(k)}}
    for qid, text, positives in zip(queries.qids, queries.texts, queries.positives):
        negatives = mined.negatives.get(qid, [])[:k]
        if len(negatives) == k:
            rows["anchor"].append(text)
            rows["positive"].append(doc_text(dataset.corpus[positives[0]]))
            for n, (doc, _) in enumerate(negatives):
                rows[f"negative_{n + 1}"].append(doc_text(dataset.corpus[doc]))
    model.max_seq_length = 256
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "plain-checkpoints"), num_train_epochs=config.epochs, per_device_train_batch_size=32,
        learning_rate=3e-5, warmup_steps=0.1, batch_sampler="no_duplicates", save_strategy="no", report_to=[],
        seed=config.seed, use_cpu=True, **flags)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=HFDataset.from_dict(rows),
                                         loss=MultipleNegativesRankingLoss(model))
    # the trainer autocasts its own forward (bf16=True); an autocast around all of train() would also run the
    # backward pass and the optimizer under it (the run that did so, 2026-12-03: 46 s a step, tuned 0.6467 vs base 0.6462)
    timed("train", trainer.train, autocast_it=False)
    _, _, tuned_ndcg = index_and_score("tuned")
    return {"total": sum(seconds.values()), "stages": seconds, "tuned_ndcg": tuned_ndcg, "base_ndcg": base_ndcg,
            "pairs": len(rows["anchor"])}


def main(argv: list[str] | None = None) -> int:
    from finetune.config import FinetuneConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset (any --data form of the CLI)")
    p.add_argument("--work", type=Path, default=Path("/tmp/main-job"))
    p.add_argument("--geometry", action="store_true", help="include the geometry stage in ours (off: the plain side has none)")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    a = ours(args.data, args.work / "ours", args.geometry)
    b = plain(args.data, args.work)
    print(f"\n## {args.data}: the main job vs plain sentence-transformers (same machine, same run)\n")
    print("| ours: stage | s |")
    print("|---|---|")
    for stage, s in a["stages"].items():
        print(f"| {stage} | {s:.1f} |")
    print("\n| plain: stage | s |")
    print("|---|---|")
    for stage, s in b["stages"].items():
        print(f"| {stage} | {s:.1f} |")
    print("\n| | ours | plain | ratio ours/plain |")
    print("|---|---|---|---|")
    print(f"| end to end s | {a['total']:.0f} | {b['total']:.0f} | {a['total'] / b['total']:.2f} |")
    print(f"| base nDCG@10 | {a['base_ndcg']:.4f} | {b['base_ndcg']:.4f} | |")
    print(f"| tuned nDCG@10 | {a['tuned_ndcg']:.4f} | {b['tuned_ndcg']:.4f} | |")
    print(f"\nBoth sides: {a['pairs']} training queries (ours) / {b['pairs']} (plain), "
          f"{FinetuneConfig().num_negatives} mined negatives each. Ours also evaluates BM25 and two hybrids with "
          "significance tests, holds out dev queries by document and selects the checkpoint on them, and writes the "
          "report; the plain side does none of that.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
