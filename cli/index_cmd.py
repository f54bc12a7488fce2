"""``retrieval index build|info``: make a saved FAISS index of a corpus, or describe one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import UsageError, add_config_arg, add_data_args, add_model_args, echo, load_model_from_args

BUILD_DESCRIPTION = """Encode a corpus with a model and save a FAISS index directory:
index.faiss, embeddings.npy and meta.json (model and weights fingerprint, corpus
fingerprint, doc ids, prompts, factory string, backend, tuned search parameters,
checksums). If OUT already holds an index of the same model, corpus and settings,
nothing is re-encoded; one made from something else is refused unless --overwrite.

Approximate indexes (IVF, HNSW, PQ) are tuned after building: the smallest nprobe /
efSearch whose Recall@10 against exact search reaches --target-recall, measured on
the dataset's queries (held out: they are not in the index), is stored in meta.json
and applied whenever the index is loaded.

Large corpora: --shards N encodes into N memory-mapped .npy shards (resumable: a
finished shard is never recomputed), with --workers processes each writing its own
shards; IVF indexes are then built per shard and merged (FAISS's on-disk recipe).
On GPUs, encode with `torchrun --nproc-per-node G -m cli.shard_worker ...`
into the same --shard-dir first; this command then only indexes."""

BACKEND_CHOICES = ("auto", "torch", "torch-bf16", "torch-int8", "onnx", "onnx-int8", "openvino", "openvino-int8")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build or inspect a saved FAISS index")
    isub = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    b = isub.add_parser("build", help="encode a corpus and save its index", description=BUILD_DESCRIPTION,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(b, split=None)
    add_model_args(b)
    g = b.add_argument_group("index")
    g.add_argument("--factory", default="Flat",
                   help="FAISS index_factory string: Flat (exact), HNSW32, IVF1024,Flat, IVF1024,PQ32, OPQ32,IVF1024,PQ32, "
                        "or auto (chosen from the corpus size and --memory-budget) (default: Flat)")
    g.add_argument("--memory-budget", default=None,
                   help="with --factory auto: memory the index may use, e.g. 2GB or 512MiB (default: no limit)")
    g.add_argument("--target-recall", type=float, default=0.95,
                   help="tune nprobe/efSearch of approximate indexes to this Recall@10 vs exact search; 0 skips tuning "
                        "(default: 0.95)")
    g.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="how documents are encoded: auto (torch-bf16 where the GPU or CPU runs bf16 natively, else "
                        "torch; printed and recorded in meta.json), torch (float32), torch-bf16 (autocast), torch-int8 (dynamic "
                        "quantisation), onnx / onnx-int8 / openvino (sentence-transformers backends; need the "
                        "optional packages), openvino-int8 (static int8 calibrated on 300 of your documents) "
                        "(default: auto)")
    g.add_argument("--dim", type=int, default=None,
                   help="Matryoshka: index only the first DIM coordinates of each embedding, renormalised (queries are "
                        "cut the same way at search; recorded as truncate_dim in meta.json); refused unless the model "
                        "was trained for DIM (its matryoshka.json, written by `retrieval finetune --matryoshka-dims`) "
                        "(default: full width)")
    g.add_argument("--force-dim", action="store_true",
                   help="with --dim: truncate even though the model records no Matryoshka training for DIM")
    g.add_argument("--shards", type=int, default=1, help="encode in this many resumable shards on disk (default: 1)")
    g.add_argument("--workers", type=int, default=1, help="with --shards: encoding processes, each writing its shards (default: 1)")
    g.add_argument("--shard-dir", default=None, help="with --shards: folder of the shard files (default: OUT.shards beside OUT)")
    b.add_argument("--out", required=True, help="index directory to write")
    b.add_argument("--overwrite", action="store_true", help="replace an index in OUT built from another model/corpus/backend")
    b.add_argument("--no-embeddings", action="store_true", help="do not keep embeddings.npy beside the index (no tuning then)")
    add_config_arg(b)
    b.set_defaults(func=build)
    i = isub.add_parser("info", help="print what an index was built from")
    i.add_argument("path", help="index directory")
    i.set_defaults(func=info)


def _load(args: argparse.Namespace, calibration: list[str] | None):
    if args.backend == "auto":
        from retrieval.backends import auto_backend

        args.backend, why = auto_backend(args.device)
        echo(f"--backend auto: {args.backend} ({why})")
    if args.backend == "torch":
        return load_model_from_args(args, args.model)
    from retrieval.backend_exports import BackendUnavailable
    from retrieval.backends import load_model_with_backend

    try:
        return load_model_with_backend(args.model, args.backend, args.device, args.trust_remote_code, args.max_seq_length,
                                       calibration)
    except BackendUnavailable as err:
        raise UsageError(f"--backend {args.backend}: {err}") from None


def _calibration(dataset, args: argparse.Namespace) -> list[str] | None:
    """A sample of the corpus for backends whose quantisation is calibrated on data, else None."""
    from retrieval.backend_exports import calibration_sample
    from retrieval.backends import NEEDS_CALIBRATION
    from retrieval.encode import doc_texts

    if args.backend not in NEEDS_CALIBRATION:
        return None
    return doc_texts(dataset.corpus, calibration_sample(list(dataset.corpus)))  # same rows as sampling the texts


def _factory(args: argparse.Namespace, n: int, dim: int) -> str:
    if args.factory != "auto":
        return args.factory
    from index.auto import choose_factory

    try:
        factory = choose_factory(n, dim, args.memory_budget)
    except ValueError as err:
        raise UsageError(str(err)) from None
    echo(f"--factory auto: {factory} for {n} documents of dimension {dim}")
    return factory


def build(args: argparse.Namespace) -> int:
    from retrieval.models import embedding_dim
    from retrieval.retriever import IndexSpec
    from retrieval.sources import resolve

    if args.shards < 1 or args.workers < 1:
        raise UsageError("--shards and --workers must be at least 1")
    if args.dim is not None and args.shards > 1:
        raise UsageError("--dim does not combine with --shards (not implemented); build it with --shards 1")
    dataset = resolve(args.data, strict=args.strict)
    model = _load(args, _calibration(dataset, args))
    _truncate_model(model, args)
    factory = _factory(args, len(dataset.corpus), embedding_dim(model))
    spec = IndexSpec(factory=factory, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
                     batch_size=args.batch_size, save_embeddings=not args.no_embeddings, dim=args.dim)
    out = Path(args.out)
    from retrieval.retriever import load_if_matching

    stored = load_if_matching(out, model, dataset.corpus, spec, backend=args.backend, overwrite=args.overwrite)
    if stored is None:
        build_fn = _build_sharded if args.shards > 1 else _build_single
        stored = build_fn(out, model, dataset, spec, args)
    stored = _tune(stored, model, dataset, args)
    params = f", {stored.meta.search_params}" if stored.meta.search_params else ""
    echo(f"index at {out}: {len(stored)} documents, dim {stored.meta.dim}, {stored.meta.factory}{params}, "
         f"backend {stored.meta.backend}")
    return 0


def _truncate_model(model, args: argparse.Namespace) -> None:
    """Check ``--dim`` against the model's width and Matryoshka record, then make the model encode at that width.

    sentence-transformers' ``truncate_dim`` cuts every embedding the model returns, so the
    documents, the recall-tuning queries and ``--factory auto`` all see the truncated width.
    """
    if args.dim is None:
        if args.force_dim:
            raise UsageError("--force-dim needs --dim")
        return
    from finetune.losses.matryoshka import RECORD_FILE, read_record
    from retrieval.models import embedding_dim

    full = embedding_dim(model)
    if not 1 <= args.dim <= full:
        raise UsageError(f"--dim {args.dim}: the model's embeddings have {full} dimensions; pick 1..{full}")
    trained = read_record(args.model)
    if args.dim != full and (trained is None or args.dim not in trained) and not args.force_dim:
        what = f"it was trained for {','.join(map(str, trained))}" if trained else f"it has no {RECORD_FILE}"
        raise UsageError(f"--dim {args.dim}: model {args.model!r} was not Matryoshka-trained for {args.dim} dimensions "
                         f"({what}); retrain with --matryoshka-dims, or pass --force-dim to truncate anyway")
    model.truncate_dim = args.dim


def _build_single(out: Path, model, dataset, spec, args: argparse.Namespace):
    from index import load_index
    from index.atomic import atomic_dir
    from retrieval.ann import record_meta
    import dataclasses

    from retrieval.retriever import build_or_load

    spec = dataclasses.replace(spec, backend=args.backend)  # build_or_load encodes the corpus in its bulk context
    with atomic_dir(out) as tmp:
        stored = build_or_load(model, args.model, dataset.corpus, tmp, spec, source=dataset.source)
        record_meta(stored, backend=args.backend)
    return load_index(out)


def _build_sharded(out: Path, model, dataset, spec, args: argparse.Namespace):
    from retrieval.shard_encode import build_sharded_index

    shard_dir = Path(args.shard_dir) if args.shard_dir else out.with_name(out.name + ".shards")
    return build_sharded_index(out, model, args.model, dataset, spec, args.shards, shard_dir, workers=args.workers,
                               backend=args.backend, device=args.device, calibration=_calibration(dataset, args))


def _tune(stored, model, dataset, args: argparse.Namespace):
    from retrieval.ann import is_approximate, autotune_stored

    queries = list(dataset.queries.values())
    result = autotune_stored(stored, model, queries, args.target_recall, args.batch_size, args.backend)
    if result is not None:
        how = f"{min(len(queries), 1000)} held-out queries" if queries else "1000 indexed vectors, leave-one-out"
        verdict = "" if result.reached else f" (target {args.target_recall} not reached)"
        echo(f"tuned {result.params}: Recall@10 {result.recall:.3f} vs exact search on {how}{verdict}")
    elif args.target_recall > 0 and is_approximate(stored) and stored.embeddings() is None:
        echo("not tuned: --no-embeddings leaves no vectors to measure recall against")
    return stored


def info(args: argparse.Namespace) -> int:
    from index.store import read_meta

    meta = read_meta(args.path)
    summary = {k: v for k, v in meta.__dict__.items() if k != "doc_ids"}
    summary["documents"] = len(meta.doc_ids)
    echo(json.dumps(summary, indent=2))
    return 0
