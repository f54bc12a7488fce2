"""One ``torchrun`` rank of a sharded corpus encoding: ``torchrun --nproc-per-node G -m cli.shard_worker ...``.

Each process encodes its own shards (:func:`retrieval.shard_encode.encode_this_rank`); then
``retrieval index build --shards N --shard-dir DIR`` finds every shard done and only indexes.
"""

from __future__ import annotations

import argparse
import sys

from retrieval.encode import DEFAULT_BATCH_SIZE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchrun ... -m cli.shard_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder or name (as for `retrieval index build`)")
    parser.add_argument("--model", required=True, help="sentence-transformers model name or folder")
    parser.add_argument("--out", required=True, help="shard folder (give the same one to `index build --shard-dir`)")
    parser.add_argument("--shards", type=int, required=True, help="number of shards")
    parser.add_argument("--document-prompt", default=None, help="text prepended to every document")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="encoding batch size")
    parser.add_argument("--backend", default="auto",
                        help="encoding backend (see retrieval.backends); 'auto' resolves as `retrieval index build "
                             "--backend auto` does (bf16 where the hardware has it natively), so the shards match what "
                             "the later `index build --shards N --shard-dir DIR` expects")
    return parser


def main(argv: list[str] | None = None) -> int:
    from retrieval.shard_encode import encode_this_rank

    args = build_parser().parse_args(argv)
    if args.backend == "auto":
        from retrieval.backends import auto_backend

        args.backend, why = auto_backend()
        print(f"--backend auto: {args.backend} ({why})", file=sys.stderr)
    encode_this_rank(args.data, args.model, args.out, args.shards, args.document_prompt, args.batch_size, args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
