"""Options shared by several commands, and the ``--config`` file mechanism."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from retrieval.errors import UsageError  # defined there; still importable from here
from retrieval.models import DEFAULT_MODEL, slug  # slug: re-exported for the commands


def add_data_args(parser: argparse.ArgumentParser, split: str | None = "test") -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        required=True,
        help="dataset: a BEIR folder, a save_to_disk folder, hf:<repo>, or a BEIR name (scifact, fiqa, ...) "
        "looked up in $RETRIEVAL_DATA/<name>, then the cache ($RETRIEVAL_CACHE), then downloaded",
    )
    if split is not None:
        group.add_argument("--split", default=split, help=f"qrels split to evaluate on (default: {split})")
    group.add_argument(
        "--strict", action="store_true", help="fail on qrels that name unknown queries or documents (default: warn and skip)"
    )


def add_model_args(parser: argparse.ArgumentParser, multiple: bool = False) -> None:
    group = parser.add_argument_group("model")
    if multiple:
        group.add_argument(
            "--model", action="append", default=None,
            help=f"sentence-transformers model name or folder; repeat to compare several (default: {DEFAULT_MODEL})",
        )
    else:
        group.add_argument("--model", default=DEFAULT_MODEL, help=f"sentence-transformers model name or folder (default: {DEFAULT_MODEL})")
    group.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: best available)")
    group.add_argument("--batch-size", type=int, default=64, help="encoding batch size (default: 64)")
    group.add_argument("--max-seq-length", type=int, default=None, help="truncate inputs to this many tokens (default: the model's)")
    group.add_argument("--query-prompt", default=None, help='text prepended to every query, e.g. "query: " for e5 models')
    group.add_argument("--document-prompt", default=None, help='text prepended to every document, e.g. "passage: "')
    group.add_argument(
        "--trust-remote-code", action="store_true", help="allow a model to run its own Python code from the hub (off by default)"
    )


def add_index_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--factory", default="Flat",
        help="FAISS index_factory string: Flat (exact), HNSW32, IVF1024,Flat, IVF1024,PQ32, ... (default: Flat)",
    )


def load_model_from_args(args: argparse.Namespace, name: str):
    from retrieval.models import load_model

    return load_model(name, device=args.device, trust_remote_code=args.trust_remote_code, max_seq_length=args.max_seq_length)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UsageError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as err:
        raise UsageError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({err})") from None


def apply_config(args: argparse.Namespace, argv: list[str]) -> argparse.Namespace:
    """Fill options from ``--config`` where the command line did not set them."""
    path = getattr(args, "config", None)
    if not path:
        return args
    given = {a.split("=", 1)[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    for key, value in _read_config(Path(path)).items():
        dest = key.replace("-", "_")
        if not hasattr(args, dest):
            raise UsageError(f"{path}: unknown option {key!r} for `retrieval {args.command}`")
        if dest not in given:
            setattr(args, dest, value)
    return args


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None,
        help="JSON or TOML file of option values (keys are option names); command-line flags override it",
    )


def echo(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)
