"""The effect of K, the number of negatives, measured by training: query mode against the frozen corpus.

For each K the query encoder is fine-tuned with K negatives per query and step drawn at
random from the frozen base-model corpus embeddings (``--corpus-negatives K``; "all" is the
whole corpus, today's query mode), with the same data, steps, learning rate and seed. The
frozen corpus is what makes this cheap: nothing is re-encoded, and K costs only the width
of one matrix product. Each row: test nDCG@10 on all and on unseen-document queries (their
relevant documents never training positives), Recall@100, the final training loss L and
the InfoNCE bound log(K+1) - L (mean of the last quarter of logged steps), and wall time.

    python bench/negatives_k.py --data ../shared/data/beir/scifact --work /tmp/negatives-k
    python bench/negatives_k.py --data ~/.cache/retrieval/datasets/manpages --work /tmp/negatives-k

Prints a markdown table, writes ``WORK/<dataset>/negatives_k.json`` and ``negatives_k.png``
(nDCG@10 all / unseen and the bound against K, log scale, with the base model's lines).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recipes import score, test_groups  # noqa: E402  (bench/ is on sys.path when run as a script)

KS = ["1", "3", "15", "63", "255", "1023", "all"]


def last_quarter_mean(log: list[dict], key: str) -> float | None:
    values = [float(row[key]) for row in log if key in row]
    if not values:
        return None
    tail = values[len(values) - max(1, len(values) // 4):]
    return sum(tail) / len(tail)


def train_one(k: str, dataset, work: Path, base_index_dir: Path, args) -> tuple[Path, dict]:
    from finetune.config import FinetuneConfig
    from finetune.train import finetune

    config = FinetuneConfig(mode="query", epochs=args.epochs, learning_rate=args.learning_rate, select_on="unseen",
                            interpolate="none", test_split="", seed=args.seed,
                            corpus_negatives=0 if k == "all" else int(k))
    out = work / f"k-{k}"
    start = time.perf_counter()
    result = finetune(dataset, config, out, base_index=base_index_dir)
    loss = last_quarter_mean(result.train_log, "loss")
    bound = last_quarter_mean(result.train_log, "mi_lower_bound")
    candidates = last_quarter_mean(result.train_log, "n_candidates")
    return out / "model", {"seconds": time.perf_counter() - start, "loss": loss, "mi_bound": bound,
                           "n_candidates": candidates, "log_k_plus_1": math.log(candidates) if candidates else None}


def plot(rows: dict[str, dict], base: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["n_candidates"] - 1 for r in rows.values()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for group, style in (("all", "-o"), ("unseen", "-s")):
        left.plot(ks, [r.get(f"{group}_ndcg@10") for r in rows.values()], style, label=f"tuned, {group} test queries")
        if f"{group}_ndcg@10" in base:
            left.axhline(base[f"{group}_ndcg@10"], linestyle="--", linewidth=1, color="grey" if group == "all" else "black",
                         label=f"base, {group}")
    left.set(xscale="log", xlabel="K (negatives per query)", ylabel="test nDCG@10", title=title)
    left.legend(fontsize=8)
    right.plot(ks, [r["mi_bound"] for r in rows.values()], "-o", label="log(K+1) - L (end of training)")
    right.plot(ks, [math.log(k + 1) for k in ks], ":", color="grey", label="log(K+1), the ceiling")
    right.set(xscale="log", xlabel="K (negatives per query)", ylabel="nats", title="InfoNCE bound on I(query; positive)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from recipes import test_run

    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load, search
    from retrieval.sources import resolve

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset (any --data form of the CLI)")
    p.add_argument("--work", type=Path, default=Path("/tmp/negatives-k"))
    p.add_argument("--ks", nargs="+", default=KS, help="values of K; 'all' is the whole corpus (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=5, help="epochs of every run (same steps for each K)")
    p.add_argument("--learning-rate", type=float, default=4e-5)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)

    dataset = resolve(args.data)
    work = args.work / dataset.name
    work.mkdir(parents=True, exist_ok=True)
    groups = test_groups(dataset)
    base = load_model("all-MiniLM-L6-v2")
    base_index = build_or_load(base, "all-MiniLM-L6-v2", dataset.corpus, work / "base-index", IndexSpec(), source=dataset.source)
    base_run = search(base_index, base, dataset.split_queries("test"), 100, "base", progress=False)
    base_row = score(groups, base_run, base_run)
    out_file = work / "negatives_k.json"
    rows = json.loads(out_file.read_text())["rows"] if out_file.exists() else {}
    for k in args.ks:
        model_dir, info = train_one(k, dataset, work, work / "base-index", args)
        run = test_run(load_model(str(model_dir)), model_dir, dataset, base_index, base, work / f"k-{k}" / "indexes")
        rows[k] = {**score(groups, base_run, run), **info}
        out_file.write_text(json.dumps({"base": base_row, "rows": rows, "epochs": args.epochs, "seed": args.seed}, indent=1))
        print(f"K={k}: {json.dumps(rows[k])}", flush=True)
    ordered = {k: rows[k] for k in sorted(rows, key=lambda k: float("inf") if k == "all" else int(k))}
    plot(ordered, base_row, work / "negatives_k.png", f"{dataset.name}: query mode, {args.epochs} epochs")
    print(f"\n## {dataset.name}: K negatives per query (query mode, {args.epochs} epochs, seed {args.seed})\n")
    print("| K | all nDCG@10 (p vs base) | unseen nDCG@10 (p) | all R@100 | final L | log(K+1) - L | wall s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| base | {base_row['all_ndcg@10']:.4f} | {base_row.get('unseen_ndcg@10', float('nan')):.4f} | "
          f"{base_row['all_recall@100']:.4f} | - | - | - |")
    for k, r in ordered.items():
        unseen = f"{r['unseen_ndcg@10']:.4f} ({r['unseen_p']:.3f})" if "unseen_ndcg@10" in r else "-"
        print(f"| {k} ({r['n_candidates'] - 1:.0f}) | {r['all_ndcg@10']:.4f} ({r['all_p']:.3f}) | {unseen} | "
              f"{r['all_recall@100']:.4f} | {r['loss']:.3f} | {r['mi_bound']:.3f} | {r['seconds']:.0f} |")
    print(f"\nplot: {work / 'negatives_k.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
