"""Fine-tuning benchmark: all-MiniLM-L6-v2 on SciFact train, default settings, evaluated on test.

End to end from nothing (the base index is built, not reused, unless --base-index
names one): prints zero-shot and tuned nDCG@10 / Recall@100, wall time per stage,
training pairs/s, and, unless --skip-loss, our InfoNCE vs sentence-transformers'
MultipleNegativesRankingLoss throughput on identical batches (bench/loss_throughput.py).

    python bench/finetune_e2e.py [--data ../shared/data/beir/scifact] [--mode query|full] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


TARGET, GTE_SMALL = 0.70, 0.727


def default_data() -> str:
    """``$RETRIEVAL_DATA/scifact`` if it exists, else ``../shared/data/beir/scifact`` beside the checkout."""
    env = os.environ.get("RETRIEVAL_DATA")
    if env and (Path(env) / "scifact").is_dir():
        return str(Path(env) / "scifact")
    return str(Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--out", default=None, help="output folder (default: a fresh temp dir)")
    parser.add_argument("--base-index", default=None, help="reuse this base index (then encoding is not timed)")
    parser.add_argument("--mode", default=None, help="override the default training mode")
    parser.add_argument("--epochs", type=int, default=None, help="override the default number of epochs")
    parser.add_argument("--skip-loss", action="store_true", help="skip the InfoNCE vs MNRL throughput comparison")
    args = parser.parse_args()

    from finetune.config import FinetuneConfig
    from finetune.train import finetune
    from retrieval.sources import resolve

    start = time.perf_counter()
    dataset = resolve(args.data)
    config = FinetuneConfig()
    if args.mode:
        config.mode = args.mode
    if args.epochs:
        config.epochs = args.epochs
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-finetune-"))
    result = finetune(dataset, config, out, base_index=args.base_index)
    total = time.perf_counter() - start

    test = result.test_metrics
    best = result.best_dev
    print(f"\n{dataset.describe()}\nmode {config.mode}, {config.epochs} epochs, batch {config.batch_size}, "
          f"lr {config.learning_rate}, tau {config.temperature}, precision {config.precision}; dev: {result.dev_split}")
    print(f"mining: {result.mining}")
    print(f"\n{'system':<12} {'nDCG@10':>8} {'R@100':>8}")
    for name in ("base", "tuned"):
        print(f"{name:<12} {test[name]['ndcg@10']:>8.4f} {test[name]['recall@100']:>8.4f}")
    gain = test["tuned"]["ndcg@10"] - test["base"]["ndcg@10"]
    print(f"gain {gain:+.4f}; target {TARGET} {'met' if test['tuned']['ndcg@10'] >= TARGET else 'NOT met'}; "
          f"gte-small {GTE_SMALL} {'beaten' if test['tuned']['ndcg@10'] > GTE_SMALL else 'not beaten'}")
    print(f"selected on dev {result.select} {best[result.select]:.4f} at epoch {best['epoch']} "
          f"(start {result.dev_history[0][result.select]:.4f}); interpolation: {result.interpolation}")
    print("\nstage                     seconds")
    for stage, seconds in result.seconds.items():
        print(f"{stage:<24} {seconds:>8.1f}")
    print(f"{'end to end':<24} {total:>8.1f}  ({total / 60:.1f} min; target 20 min)")
    print(f"training throughput: {result.pairs_per_second} pairs/s")
    if not args.skip_loss:
        script = Path(__file__).resolve().parent / "loss_throughput.py"
        if script.exists():
            print("\nInfoNCE vs MultipleNegativesRankingLoss on identical batches:")
            subprocess.run([sys.executable, str(script)], check=False)


if __name__ == "__main__":
    main()
