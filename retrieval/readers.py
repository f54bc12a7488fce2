"""Line-level readers for jsonl, csv and tsv files that name the file and line of any fault.

Every malformed input ends in one :class:`DataError` whose message starts with
``path:line:``, never in a traceback from inside ``json`` or ``csv``. A UTF-8 BOM
and CRLF line endings are accepted; other encodings are reported as such.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

csv.field_size_limit(1 << 30)


class DataError(ValueError):
    """Bad input data; the message names the file (and line) and what is wrong."""


def _open(path: Path):
    return open(path, encoding="utf-8-sig", newline="")


def _decode_error(path: Path, err: UnicodeDecodeError, line: int) -> DataError:
    return DataError(f"{path}:{line}: not valid UTF-8 ({err.reason} at byte {err.start}); re-save the file as UTF-8")


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; each must be a JSON object."""
    path = Path(path)
    lineno = 0
    try:
        with _open(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
    except UnicodeDecodeError as err:
        raise _decode_error(path, err, lineno + 1) from None


def read_table(path: str | Path, delimiter: str | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` from a csv/tsv file with a header line.

    The delimiter defaults to a tab for ``.tsv`` files and a comma otherwise. A
    row with more or fewer fields than the header is an error.
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    lineno = 1
    try:
        with _open(path) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{path}:1: empty file, expected a header line") from None
            header = [h.strip() for h in header]
            for row in reader:
                lineno = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{lineno}: expected {len(header)} fields ({', '.join(header)}), found {len(row)}"
                    )
                yield lineno, dict(zip(header, row))
    except csv.Error as err:
        raise DataError(f"{path}:{lineno}: malformed {('TSV' if delimiter == chr(9) else 'CSV')} ({err})") from None
    except UnicodeDecodeError as err:
        raise _decode_error(path, err, lineno) from None


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Dispatch on the suffix: ``.jsonl``/``.json`` lines, or ``.csv``/``.tsv`` tables."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return read_table(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .csv or .tsv")
