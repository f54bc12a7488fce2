"""Build a second real retrieval dataset from this machine's manual pages, in BEIR layout.

Why: SciFact alone has 104 test queries whose relevant document was never a training
positive; a default recipe chosen on them is chosen on noise. The manual pages installed
here (Debian's coreutils, man-pages, git, systemd, OpenSSL, ... pages; real text nobody in
this project wrote) give thousands of (summary, page) pairs:

* corpus: one document per page, ``_id`` = ``name.section``, title = the names of the NAME
  section (``printf, fprintf, ...``), text = the page body without its NAME section
  (synopsis, description, options), first ``--max-words`` words;
* queries: the one-line summary of the NAME section (``formatted output conversion``).
  Pages sharing a summary make one query with several relevant pages;
* qrels: ``train`` and ``test`` splits of the *queries*, so no test query's relevant page
  is ever a training positive (every page has exactly one summary): the "unseen documents"
  situation of a user who tunes on last month's pages and searches next month's.

Shortcuts on purpose: roff is flattened with a few regular expressions, not rendered by
groff (deterministic, fast, no groff version in the numbers); ``.so`` redirects, symbolic
links, Perl POD pages (``3perl``, ``3pm``) and the 16k generated ``gcloud`` pages are
skipped. The dataset is whatever manual pages the machine has installed: two machines give two
datasets (2,790 pages and 793 test queries on one, 2,861 and 810 on another, same script), so
compare numbers on it only within one machine. Usage::

    python bench/manpages_dataset.py                     # -> ~/.cache/retrieval/datasets/manpages
    retrieval tune --data ~/.cache/retrieval/datasets/manpages --out runs/manpages

Nothing is committed: the folder is written into the cache (``--out``), atomically.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

SECTIONS = ("1", "2", "3", "5", "7", "8")
SKIP_SUFFIXES = ("3perl", "3pm")
SKIP_PREFIXES = ("gcloud",)

_GLYPHS = {"em": " - ", "en": "-", "hy": "-", "bu": "*", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'",
           "cq": "'", "co": "(c)", "rg": "(R)", "tm": "(TM)", "ci": "*", "ti": "~", "ha": "^", "rs": "\\", "lh": "",
           "rh": "", "mu": "x", "<=": "<=", ">=": ">=", "->": "->", "<-": "<-", "pl": "+", "mi": "-", "eq": "=",
           "sl": "/", "ba": "|", "br": "|", "fo": "<<", "fc": ">>", "Fo": "<<", "Fc": ">>", "de": " degrees"}
_ESCAPES = [
    (re.compile(r'\\".*$'), ""),                                    # comment to the end of the line
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),                    # font changes
    (re.compile(r"\\s[+-]?(\[[^\]]*\]|\(..|\d+)"), ""),             # size changes
    (re.compile(r"\\[*n](\[[^\]]*\]|\(..|.)"), ""),                 # strings and number registers
    (re.compile(r"\\[hvwoXDlLRbxSZ]'[^']*'"), ""),                  # motions, widths, drawing
    (re.compile(r"\\\((..)"), lambda m: _GLYPHS.get(m.group(1), "")),
    (re.compile(r"\\\[([^\]]*)\]"), lambda m: _GLYPHS.get(m.group(1), "")),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
    (re.compile(r"\\[&%:c|^}{]"), ""),
    (re.compile(r"\\[0 ~]"), " "),
    (re.compile(r"\\(.)"), r"\1"),
]
_FONT_MACROS = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB", "SY", "OP", "Nm", "Fn", "Fa", "Ar", "Fl",
                "Cm", "Pa", "Xr", "Dv", "Er", "Ev", "Va", "Li", "Sy", "Em", "Ql", "Dq", "Sq", "Pq", "Nd"}
_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}


def unescape(text: str) -> str:
    for pattern, repl in _ESCAPES:
        text = pattern.sub(repl, text)
    return text


def _args(rest: str) -> list[str]:
    """Macro arguments: space separated, double quotes group."""
    return [a.replace('""', '"') for a in re.findall(r'"((?:[^"]|"")*)"|(\S+)', rest) for a in a if a] or []


def flatten(source: str) -> dict[str, str] | None:
    """``{section heading: plain text}`` of one page's roff source, or None for a ``.so`` redirect."""
    sections: dict[str, list[str]] = {}
    current, in_table, skipping = "", False, 0
    for raw in source.splitlines():
        line = raw.rstrip()
        if skipping:  # inside a macro definition (.de ... ..)
            skipping = 0 if line.startswith("..") else 1
            continue
        if line.startswith((".\\\"", "'\\\"", '.\\"')) or line in (".", "'"):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            name, rest = parts[0], parts[1] if len(parts) > 1 else ""
            if name == "so":
                return None
            if name in ("de", "de1", "am"):
                skipping = 1
                continue
            if name in ("TS", "TE"):
                in_table = name == "TS"
                continue
            if name in ("SH", "Sh", "SS", "Ss"):
                heading = unescape(" ".join(_args(rest))).strip().upper()
                if name in ("SH", "Sh"):
                    current = heading
                    sections.setdefault(current, [])
                else:
                    sections.setdefault(current, []).append(heading.title())
                continue
            if name in _FONT_MACROS:
                args = [unescape(a) for a in _args(rest)]
                sections.setdefault(current, []).append(("" if name in _ALTERNATING else " ").join(args))
            elif name in ("IP", "TP", "It") and rest and name == "It":
                sections.setdefault(current, []).append(unescape(" ".join(_args(rest))))
            continue  # any other request or macro carries no text
        if in_table and (line.endswith(".") and re.fullmatch(r"[a-zA-Z|., ()0-9]+\.", line)):
            continue  # a table format line
        text = unescape(line.replace("\t", " "))
        if text.strip():
            sections.setdefault(current, []).append(text.strip())
    joined = {k: re.sub(r"(?<!\S)\\(?!\S)", " ", " ".join(v)) for k, v in sections.items()}  # lone "\" of \{ \} blocks
    return {k: re.sub(r"\s+", " ", v).strip() for k, v in joined.items()}


def name_line(name_text: str) -> tuple[str, str] | None:
    """``("printf, fprintf", "formatted output conversion")`` from a NAME section's text."""
    match = re.match(r"^(.*?)\s+-+\s+(.*)$", name_text)
    if not match:
        return None
    names, summary = match.group(1).strip(), match.group(2).strip()
    repeat = re.match(r"^[\w.+:-]+(?:,\s*[\w.+:-]+)*\s+-+\s+(.*)$", summary)  # "zstd - zstd, zstdmt - Compress ..."
    if repeat:
        summary = repeat.group(1)
    return names, summary.rstrip(". ")


def read_pages(root: Path, max_words: int) -> list[dict[str, str]]:
    pages = []
    for section in SECTIONS:
        folder = root / f"man{section}"
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            page = path.name[:-3] if path.name.endswith(".gz") else path.name
            stem, _, suffix = page.rpartition(".")
            if path.is_symlink() or not path.is_file() or suffix.startswith(SKIP_SUFFIXES) or stem.startswith(SKIP_PREFIXES):
                continue
            raw = gzip.open(path, "rb").read() if path.name.endswith(".gz") else path.read_bytes()
            flat = flatten(raw.decode("utf-8", errors="replace"))
            if not flat or "NAME" not in flat:
                continue
            parsed = name_line(flat.pop("NAME"))
            if parsed is None:
                continue
            names, summary = parsed
            body = " ".join(v for v in flat.values() if v)
            words = body.split()
            if len(words) < 20 or not 2 <= len(summary.split()) <= 30:
                continue
            pages.append({"_id": page, "title": names, "text": " ".join(words[:max_words]), "summary": summary})
    return pages


def build(root: Path, out: Path, test_fraction: float, max_train: int | None, max_test: int | None,
          max_words: int, seed: int) -> dict[str, int]:
    pages = read_pages(root, max_words)
    if not pages:
        raise SystemExit(f"{root}: no manual pages found (install some: apt-get install man-db manpages manpages-dev)")
    by_summary: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for p in pages:
        key = p["summary"].lower()
        by_summary.setdefault(key, []).append(p["_id"])
        texts.setdefault(key, p["summary"])
    keys = sorted(by_summary)
    random.Random(seed).shuffle(keys)
    n_test = round(len(keys) * test_fraction)
    test, train = keys[:n_test][:max_test], keys[n_test:][:max_train]
    qid = {k: "q" + hashlib.sha1(k.encode()).hexdigest()[:10] for k in keys}
    tmp = Path(tempfile.mkdtemp(prefix=".manpages-", dir=out.parent))
    try:
        with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
            for p in pages:
                f.write(json.dumps({"_id": p["_id"], "title": p["title"], "text": p["text"]}) + "\n")
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
            for k in test + train:
                f.write(json.dumps({"_id": qid[k], "text": texts[k]}) + "\n")
        (tmp / "qrels").mkdir()
        for split, ks in (("train", train), ("test", test)):
            with open(tmp / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
                f.write("query-id\tcorpus-id\tscore\n")
                for k in ks:
                    for doc in by_summary[k]:
                        f.write(f"{qid[k]}\t{doc}\t1\n")
        counts = {"documents": len(pages), "train_queries": len(train), "test_queries": len(test)}
        (tmp / "SOURCES.md").write_text(
            f"Built by bench/manpages_dataset.py from the manual pages under {root} "
            f"(sections {', '.join(SECTIONS)}), seed {seed}: {json.dumps(counts)}.\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def main(argv: list[str] | None = None) -> int:
    cache = Path(os.environ.get("RETRIEVAL_CACHE", Path.home() / ".cache" / "retrieval"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--man-root", type=Path, default=Path("/usr/share/man"), help="manual page tree (default: /usr/share/man)")
    p.add_argument("--out", type=Path, default=cache / "datasets" / "manpages", help="BEIR folder to write (default: %(default)s)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="share of summaries that become test queries")
    p.add_argument("--max-train", type=int, default=None, help="cap on training queries")
    p.add_argument("--max-test", type=int, default=None, help="cap on test queries")
    p.add_argument("--max-words", type=int, default=300, help="words kept of each page body")
    p.add_argument("--seed", type=int, default=13)
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    counts = build(args.man_root, args.out, args.test_fraction, args.max_train, args.max_test, args.max_words, args.seed)
    print(f"{args.out}: {counts['documents']} documents, {counts['train_queries']} train / "
          f"{counts['test_queries']} test queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
