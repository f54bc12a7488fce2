"""``retrieval finetune``: contrastive fine-tuning of a bi-encoder on a dataset's training queries."""

from __future__ import annotations

import argparse

from cli.common import add_config_arg, add_data_args, echo

DESCRIPTION = """Fine-tune a sentence-transformers bi-encoder on the training qrels of a dataset.

Default recipe (--mode full, 1 epoch, lr 3e-5, the one measured best on documents never seen
in training; README "Recipes, measured"): the base model indexes the corpus once (reused if
the index exists) and mines three hard negatives per query from ranks 10-100 (likely false
negatives, base score > --margin x positive score, dropped); one shared encoder is trained
with InfoNCE over in-batch candidates plus the mined negatives, known positives masked,
attention dropout off (--attention-dropout 0: PyTorch's fused attention kernel, ~2x faster).
Dev queries are held out by document; the checkpoint (and, with --interpolate auto, the
WiSE-FT weight mixing base and tuned weights) is chosen on dev queries whose relevant
documents were never training positives (--select-on unseen).
--mode query trains the query encoder alone against the frozen base index instead (an
asymmetric Router model; nothing re-encoded).

Writes OUT/model (load it with SentenceTransformer(path); model card inside),
OUT/negatives/ (mined negatives, suspects.jsonl for review), OUT/checkpoints/ (rerunning
the same command resumes), OUT/logs/ (TensorBoard) and OUT/finetune.json.
Multi-GPU / multi-process: torchrun --nproc_per_node N -m cli finetune ..."""


def register(sub: argparse._SubParsersAction) -> None:
    from finetune.config import add_to_parser

    p = sub.add_parser("finetune", help="fine-tune a bi-encoder on a dataset's training queries",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, split=None)
    p.add_argument("--out", required=True, help="output folder (model/, negatives/, checkpoints/, logs/, finetune.json)")
    p.add_argument("--base-index", default=None, help="index of the corpus under the base model to reuse or build "
                                                       "(default: OUT/indexes/base)")
    add_to_parser(p)
    add_config_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from finetune.config import from_args
    from finetune.train import finetune
    from retrieval.report import metrics_table
    from retrieval.sources import resolve

    config = from_args(args)
    dataset = resolve(args.data, strict=args.strict)
    echo(dataset.describe())
    result = finetune(dataset, config, args.out, base_index=args.base_index)
    best, start, key = result.best_dev, result.dev_history[0], result.select
    echo(f"\nmined: {result.mining}")
    echo(f"dev ({result.dev_split}): {key} {start[key]:.4f} -> best {best[key]:.4f} at epoch {best['epoch']:.2f}"
         f" (all dev nDCG@10 {start['ndcg@10']:.4f} -> {best['ndcg@10']:.4f})")
    if result.interpolation:
        echo(f"interpolation (WiSE-FT): a = {result.interpolation['alpha']:.2f} x tuned + "
             f"{1 - result.interpolation['alpha']:.2f} x base")
    if result.test_metrics:
        echo(f"\ntest split '{config.test_split}':")
        echo(metrics_table(result.test_metrics))
    echo("\n" + "  ".join(f"{stage}: {s:.1f}s" for stage, s in result.seconds.items()))
    echo(f"training throughput: {result.pairs_per_second} pairs/s; model at {result.model_path}")
    return 0
