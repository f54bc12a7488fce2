"""``retrieval geometry``: measure and plot what (contrastive) training did to embedding spaces."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import UsageError, add_config_arg, add_data_args, add_model_args, echo, load_model_from_args

DESCRIPTION = """Compare the geometry of one or more models' embedding spaces on a dataset.

Per model: anisotropy (mean cosine of random document pairs), alignment and
uniformity (Wang & Isola 2020) on the split's (query, relevant document) pairs,
same-class vs cross-class cosine histograms (class = documents relevant to the same
query, or a label column given with --labels), a 2-D PCA (UMAP if umap-learn is
installed), a linear probe under Gaussian noise, and InfoNCE loss / MI bound
log(K+1) - L against the number of negatives K.

Writes OUT/geometry.json ({model: {measure: value}}), OUT/geometry.md and PNG plots.
The corpus is never re-encoded when a matching index exists under --index-dir
(default OUT/indexes); its stored vectors are reused. An MLM-only checkpoint (e.g.
bert-base-uncased) can be compared as well: sentence-transformers mean-pools it."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("geometry", help="measure and plot the geometry of embedding spaces",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    add_model_args(p, multiple=True)
    p.add_argument("--out", required=True, help="output folder for geometry.json, geometry.md and the PNG plots")
    p.add_argument("--index-dir", default=None,
                   help="folder of saved indexes (one sub-folder per model) to reuse embeddings from; a mismatching "
                        "index there is an error, a missing one is built there (default: OUT/indexes)")
    p.add_argument("--max-docs", type=int, default=None,
                   help="measure on at most N documents: the split's judged ones first, then a seeded random sample; "
                        "without a saved index only these are encoded and no index is written (default: all)")
    p.add_argument("--labels", default=None,
                   help="jsonl/csv/tsv file with a document id column (_id, id or doc_id) and a class column "
                        "(--label-field); may be the corpus file itself (default: classes from the split's qrels)")
    p.add_argument("--label-field", default="label",
                   help="class column in --labels; dots reach nested keys, e.g. metadata.category (default: label)")
    p.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature for the loss-vs-K curve (default: 0.05)")
    p.add_argument("--sigmas", type=float, nargs="+", default=None,
                   help="probe noise norms relative to unit embeddings (default: 0 0.5 1 2 3; 2 is about N(0, 0.1) per coordinate at dimension 384)")
    p.add_argument("--n-pairs", type=int, default=100_000, help="random pairs for anisotropy and uniformity (default: 100000)")
    p.add_argument("--seed", type=int, default=0, help="seed of every sampling step (default: 0)")
    p.add_argument("--tau-sweep", action="store_true",
                   help="also fine-tune the first --model briefly at each --taus temperature (runs under OUT/tau_sweep/) "
                        "and plot test nDCG@10 and uniformity against tau; expensive: one fine-tune per tau")
    p.add_argument("--taus", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.5],
                   help="temperatures of --tau-sweep (default: 0.01 0.05 0.1 0.5)")
    p.add_argument("--tau-epochs", type=int, default=2, help="epochs of each --tau-sweep fine-tune (default: 2)")
    p.add_argument("--tau-settings", default=None,
                   help="JSON file of `retrieval finetune` settings (keys: option names, e.g. batch_size, learning_rate) "
                        "applied to every --tau-sweep fine-tune")
    p.add_argument("--tau-mode", default="query", choices=["query", "full"],
                   help="what each --tau-sweep fine-tune trains, as `retrieval finetune --mode` (default: query)")
    add_config_arg(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace):
    """The library's settings of a measurement, from this command's flags."""
    from retrieval.geometry import DEFAULT_SIGMAS
    from retrieval.geometry_measure import GeometryConfig
    from retrieval.geometry_job import GeometryOptions
    from retrieval.retriever import IndexSpec

    config = GeometryConfig(n_pairs=args.n_pairs, temperature=args.temperature, seed=args.seed,
                            sigmas=tuple(args.sigmas) if args.sigmas else DEFAULT_SIGMAS)
    spec = IndexSpec(query_prompt=args.query_prompt, document_prompt=args.document_prompt, batch_size=args.batch_size)
    return GeometryOptions(split=args.split, index_dir=args.index_dir, spec=spec, max_docs=args.max_docs,
                           labels=args.labels, label_field=args.label_field, config=config)


def run(args: argparse.Namespace) -> int:
    from retrieval.geometry_job import measure_geometry, report_title, write_geometry_report
    from retrieval.geometry_plots import nan_if_none, summary
    from retrieval.models import DEFAULT_MODEL
    from retrieval.report import metrics_table
    from retrieval.sources import resolve

    names = args.model or [DEFAULT_MODEL]
    sweep_config = tau_config(args, names[0]) if args.tau_sweep else None
    out = Path(args.out)
    dataset = resolve(args.data, strict=args.strict)
    options = options_from_args(args)
    results = measure_geometry(dataset, names, out, options, load=lambda name: load_model_from_args(args, name),
                               say=echo)
    sweep = run_tau_sweep(args, dataset, sweep_config) if sweep_config else None  # needs finetune: not in the library
    write_geometry_report(results, out, report_title(dataset, args.split), sweep=sweep)
    echo(metrics_table(summary(results)))
    if sweep:
        rows = zip(sweep["tau"], sweep["ndcg@10"], sweep["uniformity"], sweep["query_uniformity"])
        echo(metrics_table({f"tau={t:g}": {"ndcg@10": nan_if_none(n), "uniformity": nan_if_none(u),
                                           "query_uniformity": nan_if_none(q)} for t, n, u, q in rows}))
    echo(f"wrote {out / 'geometry.json'}, {out / 'geometry.md'} and the plots in {out}")
    return 0


def tau_config(args: argparse.Namespace, name: str):
    """The fine-tuning settings of every --tau-sweep run, checked before any work starts."""
    import dataclasses

    try:
        from finetune.config import FinetuneConfig
    except ImportError as err:
        raise UsageError(f"--tau-sweep needs the fine-tuning package, which cannot be imported ({err})") from None
    settings = {"base": name, "mode": args.tau_mode, "epochs": args.tau_epochs, "test_split": args.split,
                "seed": args.seed, "batch_size_encode": args.batch_size}
    if args.tau_settings:
        try:
            given = {k.replace("-", "_"): v for k, v in json.loads(Path(args.tau_settings).read_text()).items()}
        except (ValueError, AttributeError) as err:
            raise UsageError(f"{args.tau_settings}: not a JSON object of settings ({err})") from None
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(FinetuneConfig)})
        if unknown:
            raise UsageError(f"{args.tau_settings}: unknown fine-tuning setting(s) {', '.join(unknown)}")
        settings.update(given)
    config = FinetuneConfig(**settings)
    config.validate()
    return config


def run_tau_sweep(args: argparse.Namespace, dataset, config) -> dict:
    """Fine-tune ``config.base`` once per tau, reusing its saved document index as the base index when one matches."""
    from finetune.tau_sweep import tau_sweep
    from index.atomic import write_text
    from retrieval.geometry_job import index_folders, index_root, slug
    from retrieval.retriever import IndexSpec, find_matching_index

    base_index = None
    if not (args.query_prompt or args.document_prompt):  # fine-tuning indexes without prompts
        folders = index_folders(index_root(args.out, args.index_dir), slug(config.base))
        stored = find_matching_index(load_model_from_args(args, config.base), dataset.corpus, IndexSpec(), folders)
        base_index = stored.path if stored is not None else None
    echo(f"tau sweep: {len(args.taus)} fine-tunes of {config.base} ({config.mode} mode, {config.epochs} epochs each)")
    sweep = tau_sweep(dataset, config, Path(args.out) / "tau_sweep", tuple(args.taus), base_index, args.n_pairs, args.seed)
    write_text(Path(args.out) / "tau_sweep.json", json.dumps(sweep, indent=1) + "\n")
    return sweep
