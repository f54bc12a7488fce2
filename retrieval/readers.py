"""Line-level readers for jsonl, csv and tsv files that name the file and line of any fault.

Every malformed input ends in one :class:`DataError` whose message is one line
starting with ``path:line:`` (``path:`` for faults of the whole file), never in a
traceback from inside ``json`` or ``csv``. A UTF-8 BOM and CRLF line endings are
accepted. Files are decoded line by line, so an encoding fault is reported on the
line that holds it (a chunked text reader would report the chunk's first line);
UTF-16 files and NUL bytes are named as such. The ``as_*`` checks turn one field
of a record into an id, a text or a score, refusing values of the wrong type
(``null`` ids, lists, numbers where a text belongs, fractional relevance scores)
instead of stringifying them into data nobody wrote.
"""

from __future__ import annotations

import csv
import json
import math
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrieval.errors import DataError  # defined there; still importable from here

csv.field_size_limit(1 << 30)

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SURROGATE = re.compile("[\ud800-\udfff]")


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with line breaks escaped and cut to ``limit`` characters, for error messages."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` for each physical line (line ending kept), decoded one line at a time."""
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read ({one_line(err.strerror or str(err))})") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1:
                if raw.startswith(_UTF16_BOMS):
                    raise DataError(f"{path}: the file is UTF-16 encoded; re-save it as UTF-8")
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if b"\x00" in raw:
                hint = " (is it UTF-16 or a binary file?)" if raw.count(0) * 3 >= len(raw) else ""
                raise DataError(f"{path}:{lineno}: NUL byte at column {raw.index(0) + 1}{hint}; re-save as UTF-8 text")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8 ({err.reason} at column {err.start + 1}); re-save the file as UTF-8"
                ) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {dup!r} appears twice in one object")
    return obj


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; each must be a JSON object."""
    path = Path(path)
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
        except (ValueError, RecursionError) as err:  # duplicate keys, >4300-digit integers, deep nesting
            raise DataError(f"{path}:{lineno}: malformed JSON ({one_line(str(err) or type(err).__name__, 120)})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_table(
    path: str | Path, delimiter: str | None = None, require: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` from a csv/tsv file with a header line.

    The delimiter defaults to a tab for ``.tsv`` files and a comma otherwise. A
    row with more or fewer fields than the header is an error, and so is a header
    that repeats a column or lacks one of ``require``.
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    kind = "TSV" if delimiter == "\t" else "CSV"
    lines = _lines(path)
    # strict: a quote left open at the end of the file is an error, not a field that swallows the rest of it
    reader = csv.reader((line for _, line in lines), delimiter=delimiter, strict=True)
    start = 1  # the line the current record starts on (a quoted field may span lines)
    try:
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file, expected a header line") from None
        dups = sorted({h for h in header if header.count(h) > 1})
        if dups:
            raise DataError(f"{path}:1: header repeats column {', '.join(map(repr, dups))}")
        missing = [c for c in require if c not in header]
        if missing:
            raise DataError(
                f"{path}:1: header must name {', '.join(require)}; missing {', '.join(missing)} "
                f"(found {one_line(', '.join(header), 120)})"
            )
        start = reader.line_num + 1
        for row in reader:
            lineno, start = start, reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{lineno}: expected {len(header)} fields ({one_line(', '.join(header), 120)}), found {len(row)}"
                )
            yield lineno, dict(zip(header, row))
    except csv.Error as err:
        where = f"record starting on this line, error on line {reader.line_num}: " if reader.line_num > start else ""
        raise DataError(f"{path}:{start}: malformed {kind} ({where}{one_line(str(err), 120)})") from None


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Dispatch on the suffix: ``.jsonl``/``.json`` lines, or ``.csv``/``.tsv`` tables."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return read_table(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .csv or .tsv")


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def as_id(value: Any, where: str, what: str = "id") -> str:
    """An id: a non-empty string (stripped) or an integer; no control characters (they break TREC/TSV files)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: {what} must be a string, got {_type(value)}")
    text = str(value).strip()
    if not text:
        raise DataError(f"{where}: empty {what}")
    _no_surrogates(text, where, what)
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise DataError(f"{where}: {what} {one_line(repr(text), 80)} contains a control character (tab, newline, ...)")
    return text


def as_text(value: Any, where: str, what: str = "text") -> str:
    """A text field: a string; ``null`` reads as the empty string; numbers, lists and objects are refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: {what} must be a string, got {_type(value)}")
    _no_surrogates(value, where, what)
    return value


def _no_surrogates(text: str, where: str, what: str) -> None:
    """Refuse lone surrogates (JSON ``"\\ud800"``): no UTF-8 form exists, so tokenizers and writers fail on them."""
    bad = _SURROGATE.search(text)
    if bad:
        raise DataError(f"{where}: {what} holds a lone surrogate {bad.group()!r} at character {bad.start() + 1}")


def as_score(value: Any, where: str, what: str = "relevance score") -> int:
    """A graded relevance: an integer, or a string/float holding an integral number ("1", "2.0")."""
    if isinstance(value, bool):
        raise DataError(f"{where}: {what} must be an integer, got bool")
    if isinstance(value, int):
        return value
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} {one_line(repr(value), 60)} is not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise DataError(f"{where}: {what} {one_line(repr(value), 60)} is not an integer")
    return int(number)
