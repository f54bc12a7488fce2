"""``retrieval``: the command line, and the one place allowed to reach every package.

Each subcommand lives in its own module with ``register(subparsers)``; the
module imports heavy libraries only when the command runs, so ``--help`` is fast.
A ``--config FILE`` (JSON or TOML) supplies defaults for any option, keyed by the
option's name with dashes or underscores; flags on the command line win.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = [
    "cli.eval_cmd",
    "cli.index_cmd",
    "cli.search_cmd",
    "cli.finetune_cmd",
    "cli.tune_cmd",
    "cli.app_cmd",
    "cli.geometry_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrieval",
        description="Evaluate, fine-tune and index bi-encoders for retrieval on your own documents.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from index import IndexIntegrityError, IndexMismatchError
    from retrieval.errors import DataError, UsageError

    return (DataError, IndexMismatchError, IndexIntegrityError, FileNotFoundError, UsageError)


def main(argv: list[str] | None = None) -> int:
    from cli.common import apply_config

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "urllib3", "sentence_transformers", "transformers", "faiss", "bm25s", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args = apply_config(args, argv if argv is not None else sys.argv[1:])
        return int(args.func(args) or 0)
    except _user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
