"""The dataset a retrieval run is about: a corpus, queries, and qrels per split.

Formats read here (the loaders for names and Hugging Face datasets sit in
``sources.py`` and ``hf.py``):

* a BEIR folder: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``), ``qrels/<split>.tsv`` (header ``query-id corpus-id score``);
  ``corpus`` and ``queries`` may also be ``.csv``/``.tsv`` files with those columns;
* :func:`load_files`: any corpus/queries/qrels files given one by one.

Faults in the files raise :class:`DataError` (``file:line: what``). qrels that
point at unknown queries or documents are dropped with a warning that counts
them, or raise with ``strict=True``: nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.errors import DataError
from retrieval.readers import as_id, as_score, as_text, read_records, read_table

logger = logging.getLogger(__name__)

ID_FIELDS = ("_id", "id", "doc_id", "docid")
TEXT_FIELDS = ("text", "body", "contents")
TITLE_FIELDS = ("title",)
QREL_FIELDS = ("query-id", "corpus-id", "score")

Qrels = dict[str, dict[str, int]]


@dataclass
class Dataset:
    """A corpus (``id -> {"title", "text"}``), queries (``id -> text``) and qrels by split."""

    name: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, Qrels] = field(default_factory=dict)
    source: str = ""

    def split(self, name: str) -> Qrels:
        if name not in self.qrels:
            have = ", ".join(sorted(self.qrels)) or "none"
            raise DataError(f"{self.source or self.name}: no qrels for split {name!r} (available: {have})")
        return self.qrels[name]

    def split_queries(self, name: str) -> dict[str, str]:
        """The queries judged in split ``name``, in qrels order."""
        return {qid: self.queries[qid] for qid in self.split(name) if qid in self.queries}

    def describe(self) -> str:
        splits = ", ".join(f"{s}: {len(q)} queries" for s, q in sorted(self.qrels.items()))
        return f"{self.name}: {len(self.corpus)} documents, {len(self.queries)} queries ({splits or 'no qrels'})"


def _pick(obj: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in obj:
            return name
    return None


def load_corpus(path: str | Path) -> dict[str, dict[str, str]]:
    """Read documents; each needs an id and a text field, titles are optional."""
    path = Path(path)
    corpus: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in read_records(path):
        where = f"{path}:{lineno}"
        id_key, text_key = _pick(obj, ID_FIELDS), _pick(obj, TEXT_FIELDS)
        if id_key is None:
            raise DataError(f"{where}: document has no '_id' field")
        doc_id = as_id(obj[id_key], where, "document id")
        if text_key is None:
            raise DataError(f"{where}: document {doc_id!r} has no 'text' field")
        if doc_id in corpus:
            raise DataError(f"{where}: duplicate document id {doc_id!r} (first seen on line {first_line[doc_id]})")
        title_key = _pick(obj, TITLE_FIELDS)
        title = as_text(obj[title_key], where, "title") if title_key else ""
        corpus[doc_id] = {"title": title, "text": as_text(obj[text_key], where)}
        first_line[doc_id] = lineno
    if not corpus:
        raise DataError(f"{path}: the corpus is empty")
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    path = Path(path)
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in read_records(path):
        where = f"{path}:{lineno}"
        id_key, text_key = _pick(obj, ID_FIELDS), _pick(obj, TEXT_FIELDS)
        if id_key is None:
            raise DataError(f"{where}: query has no '_id' field")
        qid = as_id(obj[id_key], where, "query id")
        if text_key is None:
            raise DataError(f"{where}: query {qid!r} has no 'text' field")
        if qid in queries:
            raise DataError(f"{where}: duplicate query id {qid!r} (first seen on line {first_line[qid]})")
        queries[qid] = as_text(obj[text_key], where)
        first_line[qid] = lineno
    if not queries:
        raise DataError(f"{path}: no queries")
    return queries


def load_qrels(path: str | Path) -> Qrels:
    """Read a ``query-id, corpus-id, score`` table (tab-separated for ``.tsv``)."""
    path = Path(path)
    qrels: Qrels = {}
    repeated = 0
    for lineno, row in read_table(path, require=QREL_FIELDS):
        where = f"{path}:{lineno}"
        qid, did = as_id(row["query-id"], where, "query id"), as_id(row["corpus-id"], where, "document id")
        score = as_score(row["score"], where)
        repeated += did in qrels.get(qid, {})
        qrels.setdefault(qid, {})[did] = score
    if repeated:
        logger.warning("%s: %d repeated (query, document) pairs; the last score of each was kept", path, repeated)
    return qrels


def check_qrels(
    qrels: Qrels, queries: dict[str, str], corpus: dict, where: str, strict: bool = False
) -> Qrels:
    """Drop judgements whose query or document is unknown, counting them (``strict``: raise)."""
    unknown_q = [q for q in qrels if q not in queries]
    unknown_d = sum(1 for q, docs in qrels.items() for d in docs if d not in corpus)
    if not unknown_q and not unknown_d:
        return qrels
    message = f"{where}: {len(unknown_q)} queries not in the queries file, {unknown_d} judgements of documents not in the corpus"
    if strict:
        raise DataError(message)
    kept = {q: {d: s for d, s in docs.items() if d in corpus} for q, docs in qrels.items() if q in queries}
    kept = {q: docs for q, docs in kept.items() if docs}
    logger.warning("%s; skipped them (%d queries remain; --strict makes this an error)", message, len(kept))
    return kept


def drop_empty_splits(qrels: dict[str, Qrels], where: str) -> dict[str, Qrels]:
    """Splits left with no judged query (an empty file, or every judgement unknown) are dropped with a warning,
    so asking for one later fails naming the splits that exist instead of evaluating nothing."""
    empty = sorted(s for s, q in qrels.items() if not q)
    if empty:
        logger.warning("%s: no usable judgements in split(s) %s; dropped them", where, ", ".join(empty))
    return {s: q for s, q in qrels.items() if q}


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".jsonl", ".csv", ".tsv", ".json"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    raise DataError(f"{folder}: no {stem}.jsonl (or .csv/.tsv) here; is this a BEIR dataset folder?")


def load_beir(folder: str | Path, strict: bool = False, name: str | None = None) -> Dataset:
    """Load a BEIR-format folder with every qrels split found under ``qrels/``."""
    folder = Path(folder)
    corpus = load_corpus(_find(folder, "corpus"))
    queries = load_queries(_find(folder, "queries"))
    qrels = {}
    qrels_dir = folder / "qrels"
    for path in sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []:
        qrels[path.stem] = check_qrels(load_qrels(path), queries, corpus, str(path), strict)
    qrels = drop_empty_splits(qrels, str(qrels_dir))
    dataset = Dataset(name=name or folder.name, corpus=corpus, queries=queries, qrels=qrels, source=str(folder))
    logger.info("loaded %s", dataset.describe())
    return dataset


def load_files(
    corpus: str | Path,
    queries: str | Path | None = None,
    qrels: dict[str, str | Path] | None = None,
    strict: bool = False,
    name: str | None = None,
) -> Dataset:
    """Load a dataset from separate files (jsonl or csv/tsv with named columns)."""
    docs = load_corpus(corpus)
    qs = load_queries(queries) if queries else {}
    judged = {s: check_qrels(load_qrels(p), qs, docs, str(p), strict) for s, p in (qrels or {}).items()}
    judged = drop_empty_splits(judged, str(corpus))
    return Dataset(name=name or Path(corpus).parent.name, corpus=docs, queries=qs, qrels=judged, source=str(corpus))
