"""``retrieval index build|info``: make a saved FAISS index of a corpus, or describe one."""

from __future__ import annotations

import argparse
import json

from retrieval.cli.common import add_config_arg, add_data_args, add_index_args, add_model_args, echo, load_model_from_args

BUILD_DESCRIPTION = """Encode a corpus with a model and save a FAISS index directory:
index.faiss, embeddings.npy and meta.json (model and weights fingerprint, corpus
fingerprint, doc ids, prompts, factory string, checksums). If OUT already holds an
index of the same model, corpus and settings, nothing is re-encoded; one made from
something else is refused unless --overwrite is given."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build or inspect a saved FAISS index")
    isub = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    b = isub.add_parser("build", help="encode a corpus and save its index", description=BUILD_DESCRIPTION,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(b, split=None)
    add_model_args(b)
    add_index_args(b)
    b.add_argument("--out", required=True, help="index directory to write")
    b.add_argument("--overwrite", action="store_true", help="replace an index in OUT built from another model/corpus")
    b.add_argument("--no-embeddings", action="store_true", help="do not keep embeddings.npy beside the index")
    add_config_arg(b)
    b.set_defaults(func=build)
    i = isub.add_parser("info", help="print what an index was built from")
    i.add_argument("path", help="index directory")
    i.set_defaults(func=info)


def build(args: argparse.Namespace) -> int:
    from retrieval.retriever import IndexSpec, build_or_load
    from retrieval.sources import resolve

    dataset = resolve(args.data, strict=args.strict)
    model = load_model_from_args(args, args.model)
    spec = IndexSpec(factory=args.factory, query_prompt=args.query_prompt, document_prompt=args.document_prompt,
                     batch_size=args.batch_size, save_embeddings=not args.no_embeddings)
    stored = build_or_load(model, args.model, dataset.corpus, args.out, spec, rebuild=args.overwrite, source=dataset.source)
    echo(f"index at {stored.path}: {len(stored)} documents, dim {stored.meta.dim}, {stored.meta.factory}")
    return 0


def info(args: argparse.Namespace) -> int:
    from index.store import read_meta

    meta = read_meta(args.path)
    summary = {k: v for k, v in meta.__dict__.items() if k != "doc_ids"}
    summary["documents"] = len(meta.doc_ids)
    echo(json.dumps(summary, indent=2))
    return 0
