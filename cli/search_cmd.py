"""``retrieval search``: query a saved index from the terminal."""

from __future__ import annotations

import argparse
import json
import logging

from cli.common import echo

logger = logging.getLogger(__name__)

DESCRIPTION = """Search a saved index (from `retrieval index build` or `retrieval eval`) for one or more
queries. The query model defaults to the one recorded in the index; a model whose weights
differ from the index's is refused. Titles and snippets are shown when the corpus the
index was built from can still be found (or --data names it)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a saved index", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("query", nargs="+", help="query text (several queries: several arguments)")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--model", default=None, help="query model (default: the model recorded in the index)")
    p.add_argument("--k", type=int, default=10, help="results per query (default: 10)")
    p.add_argument("--data", default=None, help="dataset to show titles and snippets from (default: the index's own)")
    p.add_argument("--device", default=None, help="torch device (default: best available)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code to run")
    p.add_argument("--json", action="store_true", help="print results as JSON lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from index import load_index
    from retrieval.models import load_model
    from retrieval.readers import DataError
    from retrieval.retriever import search
    from retrieval.sources import resolve

    stored = load_index(args.index)
    model = load_model(args.model or stored.meta.model, device=args.device, trust_remote_code=args.trust_remote_code)
    queries = {str(i): text for i, text in enumerate(args.query)}
    run_ = search(stored, model, queries, k=args.k, progress=False).to_dict()
    corpus = {}
    source = args.data or stored.meta.corpus_source
    if source:
        try:
            corpus = resolve(source, download=False).corpus
        except DataError as err:
            logger.warning("titles unavailable: %s", err)
    for qid, text in queries.items():
        hits = sorted(run_.get(qid, {}).items(), key=lambda kv: -kv[1])
        if args.json:
            echo(json.dumps({"query": text, "hits": [{"rank": r, "id": d, "score": s, "title": corpus.get(d, {}).get("title", "")}
                                                     for r, (d, s) in enumerate(hits, 1)]}))
            continue
        echo(f"query: {text}")
        for rank, (doc_id, score) in enumerate(hits, 1):
            doc = corpus.get(doc_id, {})
            snippet = (doc.get("title") or doc.get("text", ""))[:90]
            echo(f"{rank:>4}  {score:.4f}  {doc_id}  {snippet}")
    return 0
