"""A user's own data: a corpus file plus (query, relevant document) pairs, split automatically.

Layout of such a folder (jsonl or csv/tsv with named columns)::

    corpus.jsonl   {"_id": ..., "title": ..., "text": ...}      (id/doc_id, body/contents also accepted)
    pairs.jsonl    {"query": "text", "doc_id": "..."}             one line per relevant document;
                   optional: "query_id" (else one is derived from the text), "score" (default 1),
                   "split" (train/dev/test; else assigned automatically)

Queries without a ``split`` are assigned by query, never by pair, so one query's
pairs all land on the same side: a stable hash of the query id decides (80% train,
10% dev, 10% test by default). The split does not depend on file order or on other
queries, so adding data later does not move existing queries between splits.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from retrieval.data import Dataset, check_qrels, drop_empty_splits, load_corpus
from retrieval.errors import DataError
from retrieval.readers import as_id, as_score, as_text, read_records

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
QUERY_FIELDS = ("query", "question", "query_text")
DOC_FIELDS = ("doc_id", "corpus-id", "corpus_id", "_id", "document_id")


def is_user_folder(folder: Path) -> bool:
    return any((folder / f"pairs{s}").exists() for s in (".jsonl", ".csv", ".tsv")) and not (folder / "queries.jsonl").exists()


def _assign(qid: str, fractions: dict[str, float], seed: int) -> str:
    """A split for ``qid`` from a stable hash: deterministic, independent of other queries."""
    point = int(hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()[:12], 16) / float(16**12)
    total = 0.0
    for split, share in fractions.items():
        total += share
        if point < total:
            return split
    return next(reversed(fractions))


def as_split(value: object, where: str) -> str:
    """A split name: letters, digits, ``_`` or ``-`` (it names files such as ``qrels/<split>.tsv``)."""
    name = as_id(value, where, "split")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise DataError(f"{where}: split {name!r} must be letters, digits, '_' or '-' (e.g. train, dev, test)")
    return name


def _query_id(text: str) -> str:
    return "q" + hashlib.sha256(text.strip().encode()).hexdigest()[:12]


def load_user_folder(
    folder: str | Path, strict: bool = False, fractions: dict[str, float] | None = None, seed: int = 0,
    name: str | None = None,
) -> Dataset:
    folder = Path(folder)
    fractions = fractions or DEFAULT_FRACTIONS
    corpus_file = next((folder / f"corpus{s}" for s in (".jsonl", ".csv", ".tsv") if (folder / f"corpus{s}").exists()), None)
    pairs_file = next(folder / f"pairs{s}" for s in (".jsonl", ".csv", ".tsv") if (folder / f"pairs{s}").exists())
    if corpus_file is None:
        raise DataError(f"{folder}: pairs file found but no corpus.jsonl / corpus.csv")
    corpus = load_corpus(corpus_file)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    query_split: dict[str, str] = {}
    repeated = 0
    for lineno, row in read_records(pairs_file):
        where = f"{pairs_file}:{lineno}"
        text_key = next((k for k in QUERY_FIELDS if k in row), None)
        doc_key = next((k for k in DOC_FIELDS if k in row), None)
        if text_key is None or doc_key is None:
            raise DataError(f"{where}: a pair needs a 'query' and a 'doc_id' field")
        text, doc = as_text(row[text_key], where, "query").strip(), as_id(row[doc_key], where, "doc_id")
        if not text:
            raise DataError(f"{where}: empty query text")
        given_qid = row.get("query_id")
        qid = _query_id(text) if given_qid in (None, "") else as_id(given_qid, where, "query_id")
        if queries.get(qid, text) != text:
            raise DataError(f"{where}: query id {qid!r} used for two different texts")
        queries[qid] = text
        raw_score = row.get("score")
        score = 1 if raw_score in (None, "") else as_score(raw_score, where, "score")
        given_split = row.get("split")
        split = as_split(given_split, where) if given_split not in (None, "") else query_split.get(qid) or _assign(qid, fractions, seed)
        if query_split.setdefault(qid, split) != split:
            raise DataError(f"{where}: query {qid!r} appears in splits {query_split[qid]!r} and {split!r}")
        repeated += doc in qrels.get(split, {}).get(qid, {})
        qrels.setdefault(split, {}).setdefault(qid, {})[doc] = score
    if repeated:
        logger.warning("%s: %d repeated (query, document) pairs; the last score of each was kept", pairs_file, repeated)
    if not queries:
        raise DataError(f"{pairs_file}: no pairs")
    checked = {s: check_qrels(q, queries, corpus, f"{pairs_file} ({s})", strict) for s, q in qrels.items()}
    checked = drop_empty_splits(checked, str(pairs_file))
    dataset = Dataset(name=name or folder.name, corpus=corpus, queries=queries, qrels=checked, source=str(folder))
    logger.info("loaded %s (splits assigned by query hash where not given)", dataset.describe())
    return dataset
