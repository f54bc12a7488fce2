"""``retrieval tune``: the main job, from a dataset to a tuned model, its index and a before/after report."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import add_config_arg, add_data_args, echo

DESCRIPTION = """Evaluate the base model, mine hard negatives, fine-tune, index, evaluate base vs tuned vs
BM25 vs hybrid (RRF) on the test split with paired significance tests, and write a report.

Dev queries are held out by document (no dev-unseen relevant document is a training positive),
the checkpoint (and, with --interpolate auto, the base/tuned weight mix) is chosen on them, and the run ends
with a recommendation made on dev evidence: deploy the tuned model, tuned + BM25, the base
model or base + BM25. The report's first lines say which, with a warning when the tuned model
is worse than the base model on documents it never saw in training.

Each stage is skipped when its output exists and matches its inputs, so rerunning the same
command after a crash resumes (training continues from its last checkpoint).

Outputs in OUT: model/ (the tuned model), indexes/, metrics.json
({"base","tuned","bm25","hybrid"}), comparison.json, per_query.json, curves.json, runs/,
report.md and report.html (open it in a browser), run.json. Browse the results with
`retrieval app OUT`. A dataset without a split (a folder with corpus.jsonl and
pairs.jsonl) is split into train/dev/test by query automatically."""


def register(sub: argparse._SubParsersAction) -> None:
    from finetune.config import add_to_parser

    p = sub.add_parser("tune", help="the main job: fine-tune, index, evaluate and report",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, split=None)
    p.add_argument("--out", default=None, help="run directory (default: runs/<dataset name>)")
    p.add_argument("--general", default=None,
                   help="forgetting guard: also evaluate base and tuned on this second dataset (any --data form)")
    p.add_argument("--fusion", default="rrf", help="ranx fusion method for the hybrid system (default: rrf)")
    p.add_argument("--k", type=int, default=100, help="documents retrieved per query (default: 100)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the trainer's checkpoints in OUT/checkpoints after the run (default: deleted once "
                        "the model is exported; a crashed run keeps them and resumes)")
    p.add_argument("--geometry", action=argparse.BooleanOptionalAction, default=True,
                   help="measure embedding geometry of base vs tuned (anisotropy, alignment/uniformity, class "
                        "similarity, probe, InfoNCE vs K) into OUT/geometry and the report (default: on)")
    add_to_parser(p)
    add_config_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from finetune.config import from_args
    from jobs.tune import TuneOptions, tune
    from retrieval.report import metrics_table

    out = Path(args.out or Path("runs") / Path(args.data.rstrip("/")).name.replace("hf:", ""))
    config = from_args(args)
    result = tune(TuneOptions(data=args.data, out=out, config=config, general=args.general, fusion=args.fusion,
                              k=args.k, strict=args.strict,
                              keep_checkpoints=args.keep_checkpoints, geometry=args.geometry))
    echo("")
    rec = result.get("recommendation")
    if rec:
        echo(f"DEPLOY: {rec['deploy']} ({rec['system']}): {rec['reason']}")
    for warning in (rec or {}).get("warnings", []):
        echo(f"WARNING: {warning}")
    for row in result.get("seen_unseen") or []:
        echo(f"test queries, {row['group']} ({row['queries']}): nDCG@10 base {row['base']:.4f} -> tuned {row['tuned']:.4f} "
             f"({row['delta']:+.4f}, p={row['p']:.3f})")
    echo(metrics_table({k: {m: v[m] for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10")} for k, v in result["metrics"].items()}))
    if result["general"]:
        echo(f"\nforgetting guard, {result['general']['name']}:")
        echo(metrics_table(result["general"]["metrics"]))
    echo("\n" + "  ".join(f"{stage}: {s:.1f}s" for stage, s in result["seconds"].items()))
    echo(f"\nreport: {out / 'report.html'}   browse: retrieval app {out}")
    return 0
