"""``retrieval geometry``: measure and plot what (contrastive) training did to embedding spaces."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from retrieval.cli.common import UsageError, add_config_arg, add_data_args, add_model_args, echo, load_model_from_args, slug

DESCRIPTION = """Compare the geometry of one or more models' embedding spaces on a dataset.

Per model: anisotropy (mean cosine of random document pairs), alignment and
uniformity (Wang & Isola 2020) on the split's (query, relevant document) pairs,
same-class vs cross-class cosine histograms (class = documents relevant to the same
query, or a label column given with --labels), a 2-D PCA (UMAP if umap-learn is
installed), a linear probe under Gaussian noise, and InfoNCE loss / MI bound
log(K+1) - L against the number of negatives K.

Writes OUT/geometry.json ({model: {measure: value}}), OUT/geometry.md and PNG plots.
The corpus is never re-encoded when a matching index exists under --index-dir
(default OUT/indexes); its embeddings.npy is reused. An MLM-only checkpoint (e.g.
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


def sample_doc_ids(corpus_ids: list[str], judged: set[str], max_docs: int | None, seed: int) -> list[str]:
    """All ids, or the judged ones first and then a seeded random sample of the rest, up to ``max_docs``."""
    import numpy as np

    if max_docs is None or max_docs >= len(corpus_ids):
        return list(corpus_ids)
    first = [d for d in corpus_ids if d in judged][:max_docs]
    rest = [d for d in corpus_ids if d not in judged]
    extra = np.random.default_rng(seed).permutation(len(rest))[: max_docs - len(first)]
    return first + [rest[i] for i in sorted(extra)]


def read_labels(path: str, field: str) -> dict[str, str]:
    """Document id -> class label from a jsonl/csv/tsv file; rows without the field are skipped."""
    from retrieval.readers import DataError, read_records

    labels = {}
    for line, row in read_records(path):
        doc_id = next((row[k] for k in ("_id", "id", "doc_id", "corpus-id") if row.get(k) not in (None, "")), None)
        if doc_id is None:
            raise DataError(f"{path}:{line}: no document id (_id, id or doc_id)")
        value: Any = row
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, ""):
            labels[str(doc_id)] = str(value)
    if not labels:
        raise DataError(f"{path}: no row has a {field!r} value")
    return labels


def find_index(model, dataset, spec, root: Path, preferred: str):
    """A saved index under ``root`` whose document encoder, corpus and settings match, or None.

    ``root/preferred`` is tried first, then every other sub-folder: a model tuned on
    the query side only shares its base model's document encoder, hence its index.
    """
    from index import IndexMismatchError, load_index
    from retrieval.retriever import expectation

    expect = expectation(model, dataset.corpus, spec)
    folders = [root / preferred] + sorted(p for p in root.glob("*") if p.name != preferred) if root.is_dir() else []
    for folder in folders:
        if (folder / "meta.json").exists():
            try:
                return load_index(folder, expect=expect)
            except IndexMismatchError:
                continue
    return None


def doc_vectors(model, name: str, dataset, ids: list[str], args: argparse.Namespace, spec) -> Any:
    """The (normalised) vectors of ``ids``: from a matching saved index when there is one, else encoded.

    Without ``--max-docs`` a missing index is built (and kept) under the index folder;
    with it only the sampled documents are encoded and nothing is written.
    """
    import numpy as np

    from index.build import normalize
    from retrieval.encode import doc_texts, encode
    from retrieval.retriever import build_or_load

    root = Path(args.index_dir or Path(args.out) / "indexes")
    stored = find_index(model, dataset, spec, root, slug(name))
    if stored is not None:
        echo(f"  reusing document embeddings of the index at {stored.path}")
    elif len(ids) == len(dataset.corpus):
        stored = build_or_load(model, name, dataset.corpus, root / slug(name), spec, rebuild=args.index_dir is None,
                               source=dataset.source)
        echo(f"  indexed the corpus at {stored.path}")
    if stored is not None and stored.vectors() is not None:
        row = {d: i for i, d in enumerate(stored.meta.doc_ids)}
        return np.asarray(stored.vectors()[[row[d] for d in ids]], dtype=np.float32)
    return normalize(encode(model, doc_texts(dataset.corpus, ids), spec.document_prompt, spec.batch_size, role="document"))


def model_geometry(name: str, dataset, args: argparse.Namespace, ids: list[str], classes: dict[str, str]) -> dict:
    """Encode what the measures need with one model and run :func:`retrieval.geometry.measure_all`."""
    import numpy as np

    from retrieval.encode import encode
    from retrieval.geometry import DEFAULT_SIGMAS, GeometryConfig, measure_all
    from retrieval.retriever import IndexSpec

    model = load_model_from_args(args, name)
    spec = IndexSpec(query_prompt=args.query_prompt, document_prompt=args.document_prompt, batch_size=args.batch_size)
    docs = doc_vectors(model, name, dataset, ids, args, spec)
    row = {d: i for i, d in enumerate(ids)}
    pairs = [(q, d) for q, judged in sorted(dataset.split(args.split).items()) for d, rel in sorted(judged.items())
             if rel > 0 and d in row]
    if not pairs:
        raise UsageError(f"no judged (query, document) pair of split {args.split!r} among the documents measured")
    qids = sorted({q for q, _ in pairs})
    queries = dataset.split_queries(args.split)
    qvec = dict(zip(qids, encode(model, [queries[q] for q in qids], args.query_prompt, args.batch_size, role="query")))
    relevant = {q: {row[d] for d, rel in dataset.split(args.split)[q].items() if rel > 0 and d in row} for q in qids}
    exclude = [sorted(relevant[q]) for q, _ in pairs]
    labelled = [d for d in ids if d in classes]
    config = GeometryConfig(n_pairs=args.n_pairs, temperature=args.temperature, seed=args.seed,
                            sigmas=tuple(args.sigmas) if args.sigmas else DEFAULT_SIGMAS)
    result = measure_all(docs, np.stack([qvec[q] for q, _ in pairs]), docs[[row[d] for _, d in pairs]],
                         docs[[row[d] for d in labelled]] if labelled else None,
                         [classes[d] for d in labelled] if labelled else None, exclude, config)
    result["source"] = {"data": dataset.source, "split": args.split, "model": name,
                        "classes_from": f"labels:{args.labels}:{args.label_field}" if args.labels else f"qrels:{args.split}"}
    return result


def run(args: argparse.Namespace) -> int:
    from index.atomic import write_text
    from retrieval.geometry import classes_from_qrels
    from retrieval.geometry_plots import geometry_report, summary
    from retrieval.models import DEFAULT_MODEL
    from retrieval.report import metrics_table
    from retrieval.sources import resolve

    names = args.model or [DEFAULT_MODEL]
    sweep_config = tau_config(args, names[0]) if args.tau_sweep else None
    out = Path(args.out)
    dataset = resolve(args.data, strict=args.strict)
    qrels = dataset.split(args.split)
    judged = {d for docs in qrels.values() for d, rel in docs.items() if rel > 0}
    ids = sample_doc_ids(list(dataset.corpus), judged, args.max_docs, args.seed)
    classes = read_labels(args.labels, args.label_field) if args.labels else classes_from_qrels(qrels, ids)
    echo(f"{dataset.describe()}; measuring {len(ids)} documents, {len(set(classes.values()))} classes")
    results = {}
    for name in names:
        echo(f"model {name}")
        results[name] = model_geometry(name, dataset, args, ids, classes)
    write_text(out / "geometry.json", json.dumps(results, indent=1) + "\n")
    sweep = run_tau_sweep(args, dataset, sweep_config) if sweep_config else None
    title = f"# Geometry report: {dataset.name} ({args.split})\n\n"
    write_text(out / "geometry.md", title + geometry_report(results, out, sweep=sweep) + "\n")
    echo(metrics_table(summary(results)))
    if sweep:
        echo(metrics_table({f"tau={t:g}": {"ndcg@10": _num(n), "uniformity": _num(u), "query_uniformity": _num(q)}
                            for t, n, u, q in zip(sweep["tau"], sweep["ndcg@10"], sweep["uniformity"], sweep["query_uniformity"])}))
    echo(f"wrote {out / 'geometry.json'}, {out / 'geometry.md'} and the plots in {out}")
    return 0


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


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
    from retrieval.retriever import IndexSpec

    base_index = None
    if not (args.query_prompt or args.document_prompt):  # fine-tuning indexes without prompts
        stored = find_index(load_model_from_args(args, config.base), dataset, IndexSpec(),
                            Path(args.index_dir or Path(args.out) / "indexes"), slug(config.base))
        base_index = stored.path if stored is not None else None
    echo(f"tau sweep: {len(args.taus)} fine-tunes of {config.base} ({config.mode} mode, {config.epochs} epochs each)")
    sweep = tau_sweep(dataset, config, Path(args.out) / "tau_sweep", tuple(args.taus), base_index, args.n_pairs, args.seed)
    write_text(Path(args.out) / "tau_sweep.json", json.dumps(sweep, indent=1) + "\n")
    return sweep
