"""Datasets from Hugging Face ``datasets``: the hub (``hf:<repo>``) or ``save_to_disk`` folders.

The expected shape is the one MTEB and BEIR use on the hub: a ``corpus``
configuration (``_id``, ``title``, ``text``), a ``queries`` configuration
(``_id``, ``text``) and qrels rows (``query-id``, ``corpus-id``, ``score``) whose
split names are the evaluation splits. On disk, a folder holding ``corpus/``,
``queries/`` and ``qrels/`` saved with ``save_to_disk`` (``qrels`` a DatasetDict
keyed by split), or one DatasetDict with ``corpus``, ``queries`` and
``qrels-<split>`` entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from retrieval.data import ID_FIELDS, TEXT_FIELDS, Dataset, Qrels, check_qrels, drop_empty_splits
from retrieval.errors import DataError
from retrieval.readers import as_id, as_score, as_text


def _rows_to_corpus(rows: Iterable[dict], where: str) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows):
        key = next((k for k in ID_FIELDS if k in row), None)
        text = next((k for k in TEXT_FIELDS if k in row), None)
        if key is None or text is None:
            raise DataError(f"{where}: row {i}: needs '_id' and 'text' columns, has {sorted(row)}")
        doc_id = as_id(row[key], f"{where}: row {i}")
        if doc_id in corpus:
            raise DataError(f"{where}: row {i}: duplicate id {doc_id!r}")
        title = as_text(row["title"], f"{where}: row {i}", "title") if "title" in row else ""
        corpus[doc_id] = {"title": title, "text": as_text(row[text], f"{where}: row {i}")}
    if not corpus:
        raise DataError(f"{where}: empty")
    return corpus


def _rows_to_qrels(rows: Iterable[dict], where: str) -> Qrels:
    qrels: Qrels = {}
    for i, row in enumerate(rows):
        missing = [c for c in ("query-id", "corpus-id", "score") if c not in row]
        if missing:
            raise DataError(f"{where}: row {i}: bad qrels row (no {', '.join(missing)}); needs query-id, corpus-id, score")
        qid, did = as_id(row["query-id"], f"{where}: row {i}", "query-id"), as_id(row["corpus-id"], f"{where}: row {i}", "corpus-id")
        qrels.setdefault(qid, {})[did] = as_score(row["score"], f"{where}: row {i}")
    return qrels


def _assemble(name, corpus_rows, query_rows, qrels_splits: dict, strict: bool, source: str) -> Dataset:
    corpus = _rows_to_corpus(corpus_rows, f"{source} corpus")
    queries = {q: d["text"] for q, d in _rows_to_corpus(query_rows, f"{source} queries").items()}
    qrels = {
        split: check_qrels(_rows_to_qrels(rows, f"{source} qrels/{split}"), queries, corpus, f"{source} qrels/{split}", strict)
        for split, rows in qrels_splits.items()
    }
    return Dataset(name=name, corpus=corpus, queries=queries, qrels=drop_empty_splits(qrels, source), source=source)


def load_saved(folder: str | Path, strict: bool = False, name: str | None = None) -> Dataset:
    from datasets import load_from_disk

    folder = Path(folder)
    if (folder / "corpus").is_dir() and not (folder / "dataset_dict.json").exists():
        corpus, queries, qrels = (load_from_disk(str(folder / part)) for part in ("corpus", "queries", "qrels"))
        splits = dict(qrels.items()) if hasattr(qrels, "keys") else {"test": qrels}
    else:
        whole = load_from_disk(str(folder))
        if "corpus" not in whole or "queries" not in whole:
            raise DataError(f"{folder}: saved DatasetDict needs 'corpus' and 'queries' entries, has {list(whole)}")
        corpus, queries = whole["corpus"], whole["queries"]
        splits = {k.split("-", 1)[1]: v for k, v in whole.items() if k.startswith("qrels-")}
    return _assemble(name or folder.name, corpus, queries, splits, strict, str(folder))


def load_hub(repo: str, strict: bool = False) -> Dataset:
    from datasets import load_dataset

    try:
        corpus = load_dataset(repo, "corpus")
        queries = load_dataset(repo, "queries")
        qrels = load_dataset(repo, "default")
    except Exception as err:  # the hub client raises many types; name the dataset and the cause
        raise DataError(f"hf:{repo}: could not load from the Hugging Face hub ({type(err).__name__}: {err})") from None
    first = lambda d: d[next(iter(d))]  # noqa: E731 - configurations hold one split
    return _assemble(repo.rsplit("/", 1)[-1], first(corpus), first(queries), dict(qrels.items()), strict, f"hf:{repo}")
