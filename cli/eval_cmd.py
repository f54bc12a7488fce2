"""``retrieval eval``: score one or more models (and BM25) on a dataset split."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cli.common import (
    add_config_arg, add_data_args, add_index_args, add_model_args, echo, load_model_from_args, slug,
)

DESCRIPTION = """Evaluate dense models and, with --bm25, a BM25 baseline on one qrels split.

Writes OUT/metrics.json ({system: {metric: value}}, ranx metric names), OUT/report.md
(table, paired significance tests, settings) and each system's run as OUT/runs/<system>.trec.
Indexes are kept under OUT/indexes/ (or --index-dir) and reused while model and corpus match.

With an approximate --factory (IVF, HNSW, PQ) the index is evaluated as deployed: its
nprobe / efSearch is first tuned to --target-recall against exact search (on the
dataset's queries, which are not in the index), and every model is reported twice,
"NAME" through the approximate index and "NAME (exact)" through exact search over the
same vectors, so the table shows what the approximation costs."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate models and BM25 on a dataset split", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    add_model_args(p, multiple=True)
    add_index_args(p)
    p.add_argument("--target-recall", type=float, default=0.95,
                   help="approximate indexes: tune nprobe/efSearch to this Recall@10 vs exact search; 0 keeps the "
                        "index's stored setting (default: 0.95)")
    p.add_argument("--bm25", action="store_true", help="also evaluate BM25 (bm25s, k1=1.2, b=0.75, English stopwords and stemmer)")
    p.add_argument("--k", type=int, default=100, help="documents retrieved per query (default: 100)")
    p.add_argument("--out", required=True, help="output folder for metrics.json, report.md and runs/")
    p.add_argument("--index-dir", default=None, help="where indexes are built and reused (default: OUT/indexes)")
    p.add_argument("--stat-test", default="student", choices=["student", "fisher", "tukey"],
                   help="ranx paired significance test (default: student, a paired t-test)")
    add_config_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from index.atomic import atomic_path, write_text
    from retrieval.ann import exact_twin, is_approximate, autotune_stored
    from retrieval.bm25 import bm25_run
    from retrieval.evaluate import compare, evaluate
    from retrieval.fusion import break_ties
    from retrieval.models import DEFAULT_MODEL
    from retrieval.report import eval_report, metrics_table
    from retrieval.retriever import IndexSpec, build_or_load, search
    from retrieval.rundir import write_json
    from retrieval.sources import resolve

    from retrieval.evaluate import id_widths, warm_up

    out = Path(args.out)
    index_root = Path(args.index_dir) if args.index_dir else out / "indexes"
    dataset = resolve(args.data, strict=args.strict)
    warm_up(**id_widths(dataset.queries, dataset.corpus))  # ranx's compilation, overlapped with encoding
    qrels = dataset.split(args.split)
    queries = dataset.split_queries(args.split)
    echo(f"{dataset.describe()}; evaluating {len(queries)} {args.split} queries")
    from retrieval.backends import auto_backend

    backend, why = auto_backend(args.device)
    echo(f"documents encoded with backend {backend} ({why})")
    spec = IndexSpec(factory=args.factory, query_prompt=args.query_prompt,
                     document_prompt=args.document_prompt, batch_size=args.batch_size, backend=backend)
    runs, timings, search_params = {}, {}, {}
    for name in args.model or [DEFAULT_MODEL]:
        start = time.perf_counter()
        model = load_model_from_args(args, name)
        stored = build_or_load(model, name, dataset.corpus, index_root / slug(name), spec, source=dataset.source)
        if is_approximate(stored):
            held_out = [text for qid, text in dataset.queries.items() if qid not in queries]  # not the evaluated ones
            tuned = autotune_stored(stored, model, held_out or list(queries.values()), args.target_recall, args.batch_size)
            if tuned is not None:
                echo(f"{name}: {stored.meta.factory} tuned to {tuned.params} (Recall@10 {tuned.recall:.3f} vs exact)")
        search_params[name] = stored.meta.search_params
        runs[name] = search(stored, model, queries, k=args.k, name=name, batch_size=args.batch_size)
        timings[name] = round(time.perf_counter() - start, 2)
        exact = exact_twin(stored) if is_approximate(stored) else None
        if exact is not None:
            start = time.perf_counter()
            runs[f"{name} (exact)"] = search(exact, model, queries, k=args.k, name=f"{name} (exact)",
                                             batch_size=args.batch_size)
            timings[f"{name} (exact)"] = round(time.perf_counter() - start, 2)
    if args.bm25:
        start = time.perf_counter()
        runs["bm25"] = bm25_run(dataset.corpus, queries, k=args.k)
        timings["bm25"] = round(time.perf_counter() - start, 2)
    search_params = {name: params for name, params in search_params.items() if params}
    # equal scores (BM25 has many) ordered one way for everyone, so metrics.json and trec_eval on runs/ agree
    runs = {name: break_ties(r) for name, r in runs.items()}
    results = evaluate(qrels, runs)
    comparison = compare(qrels, runs, stat_test=args.stat_test).to_dict() if len(runs) > 1 else None
    settings = {"data": dataset.source, "split": args.split, "queries": len(queries), "documents": len(dataset.corpus),
                "k": args.k, "factory": args.factory, "search_params": search_params, "query_prompt": args.query_prompt,
                "document_prompt": args.document_prompt, "max_seq_length": args.max_seq_length, "seconds": timings}
    write_json(out / "metrics.json", results)
    write_text(out / "report.md", eval_report(f"Retrieval evaluation: {dataset.name} ({args.split})", results, comparison, settings))
    for name, run_ in runs.items():
        with atomic_path(out / "runs" / f"{slug(name)}.trec") as tmp:
            run_.save(str(tmp), kind="trec")
    echo(metrics_table(results))
    echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0
