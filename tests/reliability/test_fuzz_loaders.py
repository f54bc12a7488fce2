"""Fuzzing the data loaders: every input loads exactly what was valid, or fails with one clear line.

The oracle is built from the generator, not from the loaders: a file is written
from records known to be valid, then at most one fault is planted on a known line.
Without a fault the loader must return exactly the records written (whatever the
BOM, line endings or blank lines); with one it must raise :class:`DataError` whose
message is one line starting with ``path:LINE:`` (``path:`` for whole-file faults).
Random byte mutations of valid files check the weaker property that nothing but a
one-line ``DataError`` ever escapes. Examples are derandomised and no example
database is kept, so CI runs the same cases every time.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.data import check_qrels, load_corpus, load_qrels, load_queries
from retrieval.errors import DataError
from retrieval.userdata import load_user_folder

FUZZ = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Texts: any Unicode but surrogates (no UTF-8 form) and NUL (refused as a sign of binary/UTF-16 input).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
ID = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(str.strip),
    st.integers(min_value=-10**6, max_value=10**12),
)
FORMATS = st.sampled_from(["jsonl", "csv", "tsv"])
STYLE = st.fixed_dictionaries({"bom": st.booleans(), "crlf": st.booleans(), "blank": st.booleans()})


def norm_id(value) -> str:
    return str(value).strip()


def unique_records(min_size: int = 1):
    return st.lists(st.tuples(ID, TEXT, TEXT), min_size=min_size, max_size=8, unique_by=lambda r: norm_id(r[0]))


def encode_lines(lines: list[str], style: dict) -> bytes:
    """One text line per record -> file bytes with optional BOM, CRLF and blank lines."""
    eol = "\r\n" if style["crlf"] else "\n"
    body = ""
    for line in lines:
        body += line + eol + (eol if style["blank"] else "")
    data = body.encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if style["bom"] else data


def jsonl_line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def csv_line(cells: list, fmt: str) -> str:
    buf = io.StringIO()
    # the writer quotes fields holding characters of its line terminator: keep "\r\n" there, then cut it off
    csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\r\n").writerow(cells)
    return buf.getvalue()[:-2]


def write_records(path: Path, fmt: str, header: list[str], rows: list[dict], style: dict, raw: dict[int, str] = {}) -> None:
    """Rows as jsonl objects or csv/tsv cells; ``raw`` replaces record ``i``'s line with the given text."""
    lines = [] if fmt == "jsonl" else [csv_line(header, fmt)]
    for i, row in enumerate(rows):
        if i in raw:
            lines.append(raw[i])
        elif fmt == "jsonl":
            lines.append(jsonl_line(row))
        else:
            lines.append(csv_line([row.get(h, "") for h in header], fmt))
    path.write_bytes(encode_lines(lines, style))


def record_line(fmt: str, index: int, style: dict, rows: list[dict], header: list[str]) -> int:
    """The physical line number of record ``index`` (counting a header and blank lines, and
    newlines that csv quoting keeps inside fields)."""
    step = 2 if style["blank"] else 1
    line = 1
    if fmt != "jsonl":
        line += step
    for row in rows[:index]:
        extra = 0 if fmt == "jsonl" else sum(str(row.get(h, "")).count("\n") for h in header)
        line += step + extra
    return line


def assert_one_line_error(err: DataError, path: Path, line: int | None = None) -> None:
    message = str(err)
    assert type(err) is DataError
    assert "\n" not in message and "\r" not in message, message
    prefix = f"{path}:{line}:" if line is not None else f"{path}:"
    assert message.startswith(prefix), f"{message!r} does not start with {prefix!r}"


# --- valid files load exactly ---------------------------------------------------------------


@FUZZ
@given(records=unique_records(), fmt=FORMATS, style=STYLE)
def test_valid_corpus_loads_exactly_whatever_the_bom_line_endings_and_blank_lines(tmp_path_factory, records, fmt, style):
    path = tmp_path_factory.mktemp("c") / f"corpus.{fmt}"
    rows = [{"_id": i if fmt == "jsonl" else str(i), "title": t, "text": x} for i, t, x in records]
    write_records(path, fmt, ["_id", "title", "text"], rows, style)
    expected = {norm_id(i): {"title": t, "text": x} for i, t, x in records}
    assert load_corpus(path) == expected


@FUZZ
@given(records=unique_records(), fmt=FORMATS, style=STYLE)
def test_valid_queries_load_exactly(tmp_path_factory, records, fmt, style):
    path = tmp_path_factory.mktemp("q") / f"queries.{fmt}"
    rows = [{"_id": i if fmt == "jsonl" else str(i), "text": x} for i, _, x in records]
    write_records(path, fmt, ["_id", "text"], rows, style)
    assert load_queries(path) == {norm_id(i): x for i, _, x in records}


# --- one planted fault is reported on its line ------------------------------------------------

# name -> (formats it applies to, function(row) -> raw line text or None for "edit the dict")
JSON_FAULTS = {
    "truncated JSON": lambda row: jsonl_line(row)[:-1],
    "JSON array": lambda row: json.dumps(list(row.values())),
    "JSON string": lambda row: json.dumps("just text"),
    "JSON null": lambda row: "null",
    "missing _id": lambda row: jsonl_line({k: v for k, v in row.items() if k != "_id"}),
    "missing text": lambda row: jsonl_line({k: v for k, v in row.items() if k != "text"}),
    "_id null": lambda row: jsonl_line({**row, "_id": None}),
    "_id list": lambda row: jsonl_line({**row, "_id": ["a", "b"]}),
    "_id float": lambda row: jsonl_line({**row, "_id": 1.5}),
    "_id bool": lambda row: jsonl_line({**row, "_id": True}),
    "_id object": lambda row: jsonl_line({**row, "_id": {"a": 1}}),
    "_id empty": lambda row: jsonl_line({**row, "_id": ""}),
    "_id blank": lambda row: jsonl_line({**row, "_id": "  \t "}),
    "_id with tab": lambda row: jsonl_line({**row, "_id": "a\tb"}),
    "_id with newline": lambda row: jsonl_line({**row, "_id": "a\nb"}),
    "text number": lambda row: jsonl_line({**row, "text": 42}),
    "text list": lambda row: jsonl_line({**row, "text": ["a"]}),
    "text object": lambda row: jsonl_line({**row, "text": {"a": "b"}}),
    "text bool": lambda row: jsonl_line({**row, "text": False}),
    "text NaN": lambda row: jsonl_line({**row, "text": float("nan")}),
    "text lone surrogate": lambda row: jsonl_line({**row, "text": "x"})[:-2] + '\\ud800"}',
    "title number": lambda row: jsonl_line({**row, "title": 3}),
    "key twice": lambda row: jsonl_line(row)[:-1] + ', "_id": "other"}',
    "5000-digit integer": lambda row: jsonl_line({**row, "_id": "x"}).replace('"x"', "9" * 5000),
    "nesting 100000 deep": lambda row: jsonl_line({**row, "text": "x"}).replace('"x"', "[" * 100000 + "]" * 100000),
    "very long line (2 MB) cut": lambda row: jsonl_line({**row, "text": "y" * 2_000_000})[:-2],
}
BYTE_FAULTS = {
    "latin-1 byte": b"caf\xe9",
    "NUL byte": b"a\x00b",
    "UTF-16 text": "x".encode("utf-16-le"),
}
TABLE_FAULTS = {
    "one field too many": lambda cells: cells + ["extra"],
    "one field too few": lambda cells: cells[:-1],
    "empty id": lambda cells: ["", *cells[1:]],
    "id with newline": lambda cells: ["a\nb", *cells[1:]],
}


@FUZZ
@given(records=unique_records(), data=st.data(), style=STYLE, fault=st.sampled_from(sorted(JSON_FAULTS) + ["duplicate id"]))
def test_one_bad_jsonl_line_is_reported_with_its_line_number(tmp_path_factory, records, data, style, fault):
    path = tmp_path_factory.mktemp("c") / "corpus.jsonl"
    rows = [{"_id": i, "title": t, "text": x} for i, t, x in records]
    at = data.draw(st.integers(0, len(rows)), label="bad record index")
    if fault == "duplicate id":
        if not rows:
            return
        rows.insert(at, {**rows[data.draw(st.integers(0, len(rows) - 1))], "text": "dup"})
        raw = {}
    else:
        rows.insert(at, {"_id": "planted", "title": "t", "text": "x"})
        raw = {at: JSON_FAULTS[fault](rows[at])}
    write_records(path, "jsonl", [], rows, style, raw)
    with pytest.raises(DataError) as err:
        load_corpus(path)
    if fault == "duplicate id":
        first_dup = next(j for j, r in enumerate(rows) if norm_id(r["_id"]) in {norm_id(x["_id"]) for x in rows[:j]})
        assert_one_line_error(err.value, path, record_line("jsonl", first_dup, style, rows, []))
        assert "duplicate document id" in str(err.value)
    else:
        assert_one_line_error(err.value, path, record_line("jsonl", at, style, rows, []))


@FUZZ
@given(records=unique_records(), data=st.data(), style=STYLE, fmt=FORMATS, fault=st.sampled_from(sorted(BYTE_FAULTS)))
def test_bad_bytes_on_one_line_are_reported_on_that_line(tmp_path_factory, records, data, style, fmt, fault):
    """Encoding faults are found line by line, not in the 8 KB chunk a text reader decodes at once."""
    path = tmp_path_factory.mktemp("c") / f"corpus.{fmt}"
    rows = [{"_id": str(i), "title": t, "text": x} for i, t, x in records]
    rows += [{"_id": f"pad{j}", "title": "", "text": "z" * 300} for j in range(40)]  # push faults past 8 KB
    at = data.draw(st.integers(0, len(rows)), label="bad record index")
    rows.insert(at, {"_id": "planted", "title": "", "text": "MARKqzx"})
    write_records(path, fmt, ["_id", "title", "text"], rows, style)
    blob = path.read_bytes().replace(b"MARKqzx", BYTE_FAULTS[fault])
    path.write_bytes(blob)
    with pytest.raises(DataError) as err:
        load_corpus(path)
    assert_one_line_error(err.value, path, record_line(fmt, at, style, rows, ["_id", "title", "text"]))


@FUZZ
@given(records=unique_records(), data=st.data(), style=STYLE, fmt=st.sampled_from(["csv", "tsv"]),
       fault=st.sampled_from(sorted(TABLE_FAULTS) + ["duplicate id"]))
def test_one_bad_table_row_is_reported_with_its_line_number(tmp_path_factory, records, data, style, fmt, fault):
    path = tmp_path_factory.mktemp("c") / f"corpus.{fmt}"
    header = ["_id", "title", "text"]
    rows = [{"_id": str(i), "title": t, "text": x} for i, t, x in records]
    at = data.draw(st.integers(0, len(rows)), label="bad record index")
    if fault == "duplicate id":
        rows.insert(at, {**rows[data.draw(st.integers(0, len(rows) - 1))], "text": "dup"})
        raw = {}
        bad = next(j for j, r in enumerate(rows) if norm_id(r["_id"]) in {norm_id(x["_id"]) for x in rows[:j]})
    else:
        rows.insert(at, {"_id": "planted", "title": "t", "text": "x"})
        raw = {at: csv_line(TABLE_FAULTS[fault](["planted", "t", "x"]), fmt)}
        bad = at
    write_records(path, fmt, header, rows, style, raw)
    with pytest.raises(DataError) as err:
        load_corpus(path)
    line = record_line(fmt, bad, style, rows, header)
    assert_one_line_error(err.value, path, line)


@pytest.mark.parametrize("content, expect", [
    (b"", "the corpus is empty"),
    (b"\n\r\n  \n", "the corpus is empty"),
    ('{"_id": "a", "text": "b"}\n'.encode("utf-16"), "UTF-16"),
    ('{"_id": "a", "text": "b"}\n'.encode("utf-16-le"), "NUL byte"),
    ('{"_id": "a", "text": "b"}\n'.encode("utf-16-be"), "NUL byte"),
], ids=["empty", "only blank lines", "UTF-16 with BOM", "UTF-16-LE no BOM", "UTF-16-BE no BOM"])
def test_whole_file_faults_name_the_file(tmp_path, content, expect):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expect) as err:
        load_corpus(path)
    assert_one_line_error(err.value, path)


@pytest.mark.parametrize("content, line, expect", [
    (b"", None, "empty file"),
    (b"query-id\tcorpus-id\n", 1, "missing score"),
    (b"q1\td1\t1\n", 1, "missing query-id"),
    (b"query-id\tcorpus-id\tscore\tscore\n", 1, "repeats column"),
    (b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", 3, "expected 3 fields"),
    (b"query-id\tcorpus-id\tscore\nq1\td1\tyes\n", 2, "is not a number"),
    (b"query-id\tcorpus-id\tscore\nq1\td1\t0.5\n", 2, "is not an integer"),
    (b"query-id\tcorpus-id\tscore\nq1\td1\tinf\n", 2, "is not an integer"),
    (b"query-id\tcorpus-id\tscore\nq1\td1\tnan\n", 2, "is not an integer"),
    (b"query-id\tcorpus-id\tscore\nq1\td1\t1e400\n", 2, "is not an integer"),
    (b"query-id\tcorpus-id\tscore\n\td1\t1\n", 2, "empty query id"),
    (b"query-id\tcorpus-id\tscore\nq1\t\"d1\nq2\td2\t1\n", 2, "malformed TSV .record starting on this line"),
    (b"query-id\tcorpus-id\tscore\nq1\t\"d\"1\t1\n", 2, "malformed TSV"),
], ids=["empty", "no score column", "no header", "repeated column", "short row", "word score", "fractional score",
        "inf score", "nan score", "overflowing score", "empty query id", "unterminated quote", "text after a closing quote"])
def test_bad_qrels_files_fail_on_the_right_line(tmp_path, content, line, expect):
    path = tmp_path / "test.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expect) as err:
        load_qrels(path)
    assert_one_line_error(err.value, path, line)


def test_integral_scores_written_as_floats_are_accepted(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_bytes(b"query-id\tcorpus-id\tscore\r\nq1\td1\t2.0\r\nq1\td2\t 0 \r\nq2\td1\t-1\r\n")
    assert load_qrels(path) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d1": -1}}


# --- qrels pointing at unknown ids: skipped with a warning that counts them ---------------------


@FUZZ
@given(known_q=st.sets(st.sampled_from("abcdef"), min_size=1), known_d=st.sets(st.sampled_from("uvwxyz"), min_size=1),
       judged=st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from("uvwxyz01"), st.integers(0, 3)), max_size=20))
def test_judgements_of_unknown_ids_are_dropped_and_counted(caplog, known_q, known_d, judged):
    qrels: dict[str, dict[str, int]] = {}
    for q, d, s in judged:
        qrels.setdefault(q, {})[d] = s
    queries, corpus = {q: q for q in known_q}, {d: {} for d in known_d}
    expected = {q: {d: s for d, s in docs.items() if d in corpus} for q, docs in qrels.items() if q in queries}
    expected = {q: docs for q, docs in expected.items() if docs}
    unknown_q = sum(q not in queries for q in qrels)
    unknown_d = sum(d not in corpus for docs in qrels.values() for d in docs)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        kept = check_qrels(qrels, queries, corpus, "qrels.tsv")
    assert kept == expected
    if unknown_q or unknown_d:
        assert f"{unknown_q} queries not in the queries file, {unknown_d} judgements" in caplog.text
        with pytest.raises(DataError, match=r"^qrels.tsv: "):
            check_qrels(qrels, queries, corpus, "qrels.tsv", strict=True)
    else:
        assert "skipped" not in caplog.text


# --- the user pairs format ------------------------------------------------------------------

PAIR_FAULTS = {
    "no query field": ({"query": None}, "needs a 'query'"),
    "no doc_id field": ({"doc_id": None}, "needs a 'query'"),
    "query null": ({"query": "NULL"}, "query must be a string|empty query"),
    "query number": ({"query": 7}, "query must be a string"),
    "query list": ({"query": ["a"]}, "query must be a string"),
    "query blank": ({"query": "   "}, "empty query text"),
    "doc_id null": ({"doc_id": "NULL"}, "doc_id must be a string"),
    "doc_id list": ({"doc_id": ["d"]}, "doc_id must be a string"),
    "score word": ({"score": "high"}, "is not a number"),
    "score fraction": ({"score": 0.5}, "is not an integer"),
    "score list": ({"score": [1]}, "is not a number"),
    "split with slash": ({"split": "../x"}, "must be letters"),
    "query_id list": ({"query_id": [1]}, "query_id must be a string"),
}


def _user_folder(root: Path, pairs: list[dict], raw: dict[int, str] = {}) -> Path:
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": f"doc {d}"}) + "\n" for d in "abcdef"))
    lines = [raw.get(i, json.dumps(p)) for i, p in enumerate(pairs)]
    (root / "pairs.jsonl").write_text("".join(line + "\n" for line in lines))
    return root


PAIR = st.fixed_dictionaries(
    {"query_id": st.sampled_from(["q1", "q2", "q3", "q4"]), "doc_id": st.sampled_from("abcdef"),
     "score": st.one_of(st.none(), st.integers(0, 3))},
)


@FUZZ
@given(pairs=st.lists(PAIR, min_size=1, max_size=12), splits=st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q4"]),
       st.sampled_from(["train", "dev", "test"])))
def test_valid_user_pairs_load_exactly_with_explicit_zero_scores_kept(tmp_path_factory, pairs, splits):
    root = tmp_path_factory.mktemp("u")
    rows = []
    for p in pairs:
        row = {"query": f"text of {p['query_id']}", **p}
        if row["score"] is None:
            del row["score"]
        if p["query_id"] in splits:
            row["split"] = splits[p["query_id"]]
        rows.append(row)
    expected: dict[str, dict[str, int]] = {}
    for row in rows:
        expected.setdefault(row["query_id"], {})[row["doc_id"]] = row.get("score", 1)
    ds = load_user_folder(_user_folder(root, rows))
    merged = {q: docs for split in ds.qrels.values() for q, docs in split.items()}
    assert merged == expected  # a score of 0 stays 0, a missing score is 1
    for qid, split in splits.items():
        if qid in merged:
            assert qid in ds.qrels[split]


@FUZZ
@given(n=st.integers(1, 6), data=st.data(), fault=st.sampled_from(sorted(PAIR_FAULTS)))
def test_one_bad_pair_is_reported_with_its_line_number(tmp_path_factory, n, data, fault):
    root = tmp_path_factory.mktemp("u")
    pairs = [{"query": f"query {i}", "doc_id": "abcdef"[i % 6]} for i in range(n)]
    at = data.draw(st.integers(0, n), label="bad pair index")
    change, expect = PAIR_FAULTS[fault]
    bad = {"query": "planted", "doc_id": "a"}
    for key, value in change.items():
        if value is None:
            bad.pop(key)
        else:
            bad[key] = None if value == "NULL" else value
    pairs.insert(at, bad)
    _user_folder(root, pairs)
    with pytest.raises(DataError, match=expect) as err:
        load_user_folder(root)
    assert_one_line_error(err.value, root / "pairs.jsonl", at + 1)


def test_one_query_in_two_splits_or_one_id_for_two_texts_is_an_error(tmp_path):
    root = _user_folder(tmp_path, [{"query": "x", "doc_id": "a", "split": "train"}, {"query": "x", "doc_id": "b", "split": "test"}])
    with pytest.raises(DataError, match="appears in splits") as err:
        load_user_folder(root)
    assert_one_line_error(err.value, root / "pairs.jsonl", 2)
    _user_folder(tmp_path, [{"query": "x", "query_id": "q", "doc_id": "a"}, {"query": "y", "query_id": "q", "doc_id": "b"}])
    with pytest.raises(DataError, match="two different texts"):
        load_user_folder(tmp_path)


# --- random damage: nothing but a one-line DataError ever escapes ------------------------------

LOADERS = {"corpus.jsonl": load_corpus, "corpus.csv": load_corpus, "queries.tsv": load_queries,
           "test.tsv": load_qrels, "pairs.jsonl": None}
SEED = {
    "corpus.jsonl": b'{"_id": "d1", "title": "T", "text": "one"}\n{"_id": 2, "text": "two \\u00e9"}\n',
    "corpus.csv": b'_id,title,text\nd1,T,"one, two"\nd2,,"multi\nline"\n',
    "queries.tsv": b"_id\ttext\nq1\tfirst query\nq2\tsecond\n",
    "test.tsv": b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\n",
    "pairs.jsonl": b'{"query": "cats", "doc_id": "a"}\n{"query": "dogs", "doc_id": "b", "score": 2, "split": "test"}\n',
}
JUNK = st.sampled_from([b"\x00", b"\xff", b"\xe9", b"\n", b"\r", b'"', b",", b"\t", b"{", b"}", b"[", b"null", b"\\u",
                        b"\\ud800", b"\xef\xbb\xbf", b"1e999", b"NaN", b":", b" ", b""])


@FUZZ
@given(name=st.sampled_from(sorted(LOADERS)), edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 3), JUNK),
       max_size=4), tail=st.binary(max_size=30))
def test_randomly_damaged_files_load_or_fail_with_one_line(tmp_path_factory, name, edits, tail):
    root = tmp_path_factory.mktemp("r")
    blob = bytearray(SEED[name])
    for pos, cut, junk in edits:
        pos = min(pos, len(blob))
        blob[pos : pos + cut] = junk
    blob += tail
    path = root / name
    path.write_bytes(bytes(blob))
    try:
        if name == "pairs.jsonl":
            (root / "corpus.jsonl").write_bytes(SEED["corpus.jsonl"])
            load_user_folder(root)
        else:
            LOADERS[name](path)
    except DataError as err:
        message = str(err)
        assert "\n" not in message and message.startswith(str(path) + ":"), message
        assert re.match(re.escape(str(path)) + r"(:\d+)?: \S", message), message


# --- rows from Hugging Face datasets get the same field checks ---------------------------------


@pytest.mark.parametrize("rows, expect", [
    ([{"_id": None, "text": "a"}], "row 0: id must be a string, got null"),
    ([{"_id": "a", "text": ["x"]}], "row 0: text must be a string, got list"),
    ([{"_id": "a", "text": "x"}, {"_id": "a", "text": "y"}], "row 1: duplicate id"),
    ([{"title": "t", "text": "x"}], "row 0: needs '_id' and 'text' columns"),
    ([], "empty"),
], ids=["null id", "list text", "duplicate id", "no id column", "no rows"])
def test_hf_corpus_rows_with_wrong_types_are_data_errors(rows, expect):
    from retrieval.hf import _rows_to_corpus

    with pytest.raises(DataError, match=re.escape(expect)):
        _rows_to_corpus(rows, "hf:x corpus")


@pytest.mark.parametrize("row, expect", [
    ({"query-id": "q", "corpus-id": "d", "score": 0.5}, "is not an integer"),
    ({"query-id": "q", "corpus-id": "d", "score": float("inf")}, "is not an integer"),
    ({"query-id": None, "corpus-id": "d", "score": 1}, "query-id must be a string"),
    ({"query-id": "q", "score": 1}, "no corpus-id"),
], ids=["fractional score", "infinite score", "null query id", "no corpus-id"])
def test_hf_qrels_rows_with_wrong_types_are_data_errors(row, expect):
    from retrieval.hf import _rows_to_qrels

    with pytest.raises(DataError, match=expect):
        _rows_to_qrels([row], "hf:x qrels/test")


def test_a_split_left_with_no_usable_judgement_is_dropped_with_a_warning(tmp_path, caplog):
    from retrieval.data import load_beir
    from tests.conftest import make_beir

    folder = make_beir(tmp_path / "toy")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq-cat\tnot-a-doc\t1\n")
    with caplog.at_level(logging.WARNING):
        ds = load_beir(folder)
    assert set(ds.qrels) == {"test", "train"} and "split(s) dev; dropped" in caplog.text
    with pytest.raises(DataError, match="no qrels for split 'dev' .available: test, train."):
        ds.split("dev")
