"""Loaders: good BEIR folders load exactly; every bad input is one line naming file, line and fault."""

from __future__ import annotations

import json
import logging

import pytest

from retrieval.data import load_beir, load_files
from retrieval.errors import DataError


def test_beir_folder_loads_corpus_queries_and_every_split(beir_dir):
    ds = load_beir(beir_dir)
    assert len(ds.corpus) == 24 and len(ds.queries) == 16
    assert ds.corpus["cat0"] == {"title": "cat 0", "text": "cats purr and sleep on warm windows number 0"}
    assert set(ds.qrels) == {"test", "train"}
    assert ds.qrels["train"]["t-dog"] == {"dog1": 1, "dog2": 1}
    assert list(ds.split_queries("test")) == [f"q-{t}" for t in ("cat", "dog", "sun", "moon", "rain", "tree", "fish", "bird")]


def test_missing_split_names_the_available_ones(beir_dir):
    with pytest.raises(DataError, match=r"no qrels for split 'dev' \(available: test, train\)"):
        load_beir(beir_dir).split("dev")


def _append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


def test_malformed_json_names_file_and_line(beir_dir):
    _append(beir_dir / "corpus.jsonl", '{"_id": "x", "text": ')
    with pytest.raises(DataError, match=r"corpus.jsonl:25: malformed JSON"):
        load_beir(beir_dir)


def test_missing_id_names_file_and_line(beir_dir):
    _append(beir_dir / "corpus.jsonl", json.dumps({"title": "t", "text": "no id"}))
    with pytest.raises(DataError, match=r"corpus.jsonl:25: document has no '_id' field"):
        load_beir(beir_dir)


def test_duplicate_id_names_both_lines(beir_dir):
    _append(beir_dir / "corpus.jsonl", json.dumps({"_id": "cat1", "text": "again"}))
    with pytest.raises(DataError, match=r"corpus.jsonl:25: duplicate document id 'cat1' \(first seen on line 2\)"):
        load_beir(beir_dir)


def test_duplicate_query_id_is_an_error(beir_dir):
    _append(beir_dir / "queries.jsonl", json.dumps({"_id": "q-cat", "text": "again"}))
    with pytest.raises(DataError, match=r"queries.jsonl:17: duplicate query id 'q-cat'"):
        load_beir(beir_dir)


def test_empty_corpus_is_an_error(beir_dir):
    (beir_dir / "corpus.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"corpus.jsonl: the corpus is empty"):
        load_beir(beir_dir)


def test_qrels_line_with_wrong_field_count_names_line(beir_dir):
    _append(beir_dir / "qrels" / "test.tsv", "q-cat\tcat1")
    with pytest.raises(DataError, match=r"test.tsv:10: expected 3 fields \(query-id, corpus-id, score\), found 2"):
        load_beir(beir_dir)


def test_qrels_score_must_be_a_number(beir_dir):
    _append(beir_dir / "qrels" / "test.tsv", "q-cat\tcat1\thigh")
    with pytest.raises(DataError, match=r"test.tsv:10: relevance score 'high' is not a number"):
        load_beir(beir_dir)


def test_unknown_qrels_ids_warn_with_counts_and_strict_fails(beir_dir, caplog):
    _append(beir_dir / "qrels" / "test.tsv", "q-nope\tcat1\t1")
    _append(beir_dir / "qrels" / "test.tsv", "q-cat\tnot-a-doc\t1")
    with caplog.at_level(logging.WARNING):
        ds = load_beir(beir_dir)
    assert "1 queries not in the queries file, 1 judgements of documents not in the corpus" in caplog.text
    assert "q-nope" not in ds.qrels["test"] and ds.qrels["test"]["q-cat"] == {"cat0": 1}
    with pytest.raises(DataError, match="1 queries not in the queries file"):
        load_beir(beir_dir, strict=True)


def test_bom_and_crlf_are_accepted(beir_dir):
    text = (beir_dir / "corpus.jsonl").read_text().replace("\n", "\r\n")
    (beir_dir / "corpus.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(load_beir(beir_dir).corpus) == 24


def test_non_utf8_bytes_are_reported_as_an_encoding_problem(beir_dir):
    with open(beir_dir / "queries.jsonl", "ab") as f:
        f.write(b'{"_id": "x", "text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"queries.jsonl:\d+: not valid UTF-8"):
        load_beir(beir_dir)


def test_csv_files_with_named_columns(tmp_path):
    (tmp_path / "docs.csv").write_text('id,title,text\n1,One,"first, document"\n2,Two,second\n')
    (tmp_path / "qs.csv").write_text("_id,text\nq1,first\n")
    (tmp_path / "rel.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\n")
    ds = load_files(tmp_path / "docs.csv", tmp_path / "qs.csv", {"test": tmp_path / "rel.tsv"})
    assert ds.corpus["1"] == {"title": "One", "text": "first, document"}
    assert ds.qrels["test"] == {"q1": {"1": 1}}


def test_csv_row_with_extra_field_names_line(tmp_path):
    (tmp_path / "docs.csv").write_text("id,text\n1,a\n2,b,c\n")
    with pytest.raises(DataError, match=r"docs.csv:3: expected 2 fields"):
        load_files(tmp_path / "docs.csv")


def test_saved_hf_dataset_loads(tmp_path, beir_dir):
    from datasets import Dataset as HFDataset
    from datasets import DatasetDict

    from retrieval.sources import resolve

    ds = load_beir(beir_dir)
    root = tmp_path / "saved"
    HFDataset.from_list([{"_id": k, **v} for k, v in ds.corpus.items()]).save_to_disk(str(root / "corpus"))
    HFDataset.from_list([{"_id": k, "text": v} for k, v in ds.queries.items()]).save_to_disk(str(root / "queries"))
    rows = [{"query-id": q, "corpus-id": d, "score": s} for q, docs in ds.qrels["test"].items() for d, s in docs.items()]
    DatasetDict({"test": HFDataset.from_list(rows)}).save_to_disk(str(root / "qrels"))
    loaded = resolve(str(root))
    assert loaded.corpus == ds.corpus and loaded.queries == ds.queries and loaded.qrels["test"] == ds.qrels["test"]
