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

from retrieval.readers import DataError, read_records, read_table

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
        id_key, text_key = _pick(obj, ID_FIELDS), _pick(obj, TEXT_FIELDS)
        if id_key is None:
            raise DataError(f"{path}:{lineno}: document has no '_id' field")
        if text_key is None:
            raise DataError(f"{path}:{lineno}: document {obj[id_key]!r} has no 'text' field")
        doc_id = str(obj[id_key]).strip()
        if not doc_id:
            raise DataError(f"{path}:{lineno}: empty document id")
        if doc_id in corpus:
            raise DataError(f"{path}:{lineno}: duplicate document id {doc_id!r} (first seen on line {first_line[doc_id]})")
        title_key = _pick(obj, TITLE_FIELDS)
        title = obj.get(title_key) if title_key else ""
        corpus[doc_id] = {"title": str(title or ""), "text": str(obj[text_key] or "")}
        first_line[doc_id] = lineno
    if not corpus:
        raise DataError(f"{path}: the corpus is empty")
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    path = Path(path)
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in read_records(path):
        id_key, text_key = _pick(obj, ID_FIELDS), _pick(obj, TEXT_FIELDS)
        if id_key is None:
            raise DataError(f"{path}:{lineno}: query has no '_id' field")
        if text_key is None:
            raise DataError(f"{path}:{lineno}: query {obj[id_key]!r} has no 'text' field")
        qid = str(obj[id_key]).strip()
        if not qid:
            raise DataError(f"{path}:{lineno}: empty query id")
        if qid in queries:
            raise DataError(f"{path}:{lineno}: duplicate query id {qid!r} (first seen on line {first_line[qid]})")
        queries[qid] = str(obj[text_key] or "")
        first_line[qid] = lineno
    if not queries:
        raise DataError(f"{path}: no queries")
    return queries


def load_qrels(path: str | Path) -> Qrels:
    """Read a ``query-id, corpus-id, score`` table (tab-separated for ``.tsv``)."""
    path = Path(path)
    qrels: Qrels = {}
    repeated = 0
    for lineno, row in read_table(path):
        missing = [f for f in QREL_FIELDS if f not in row]
        if missing:
            raise DataError(f"{path}:1: qrels header must name {', '.join(QREL_FIELDS)}; missing {', '.join(missing)}")
        qid, did, raw = row["query-id"].strip(), row["corpus-id"].strip(), row["score"].strip()
        if not qid or not did:
            raise DataError(f"{path}:{lineno}: empty query or document id")
        try:
            score = int(float(raw))
        except ValueError:
            raise DataError(f"{path}:{lineno}: relevance score {raw!r} is not a number") from None
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
    return Dataset(name=name or Path(corpus).parent.name, corpus=docs, queries=qs, qrels=judged, source=str(corpus))
