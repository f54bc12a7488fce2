"""Geometry of one or more models on a dataset, measured and written: ``geometry.json``, the plots, ``geometry.md``.

What ``retrieval geometry`` and the main job's geometry step both run. For each model
the corpus side comes from a matching saved index when there is one (a model tuned on
the query side only shares its base model's document encoder, hence its index);
otherwise the corpus is indexed (or, with ``max_docs``, only the sample is encoded).
The measures are :func:`retrieval.geometry_measure.measure_all`, the pictures and the markdown
section :mod:`retrieval.geometry_plots`. Models may be given by name (loaded one at a
time) or already loaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import UsageError
from retrieval.geometry_measure import GeometryConfig
from retrieval.models import slug
from retrieval.retriever import IndexSpec

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from retrieval.data import Dataset

logger = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class GeometryOptions:
    """What is measured and where saved indexes are looked for."""

    split: str = "test"  # qrels split whose (query, relevant document) pairs are measured
    index_dir: str | Path | None = None  # saved indexes, one sub-folder per model (default OUT/indexes)
    spec: IndexSpec = field(default_factory=IndexSpec)  # prompts and batch size of the encoding
    max_docs: int | None = None  # measure on at most this many documents (judged ones first)
    labels: str | None = None  # jsonl/csv/tsv file of document classes (default: classes from the qrels)
    label_field: str = "label"
    config: GeometryConfig = field(default_factory=GeometryConfig)


@dataclass
class GeometryOutput:
    results: dict[str, dict[str, Any]]  # {model name: measures}, as written to geometry.json
    markdown: str  # the report section, image links relative to the folder asked for
    files: list[Path]  # the PNG plots drawn


def sample_doc_ids(corpus_ids: list[str], judged: set[str], max_docs: int | None, seed: int) -> list[str]:
    """All ids, or the judged ones first and then a seeded random sample of the rest, up to ``max_docs``."""
    if max_docs is None or max_docs >= len(corpus_ids):
        return list(corpus_ids)
    first = [d for d in corpus_ids if d in judged][:max_docs]
    rest = [d for d in corpus_ids if d not in judged]
    extra = np.random.default_rng(seed).permutation(len(rest))[: max_docs - len(first)]
    return first + [rest[i] for i in sorted(extra)]


def read_labels(path: str, field: str) -> dict[str, str]:
    """Document id -> class label from a jsonl/csv/tsv file; rows without the field are skipped."""
    from retrieval.readers import DataError, read_records

    labels = {}
    for line, row in read_records(path):
        doc_id = next((row[k] for k in ("_id", "id", "doc_id", "corpus-id") if row.get(k) not in (None, "")), None)
        if doc_id is None:
            raise DataError(f"{path}:{line}: no document id (_id, id or doc_id)")
        value: Any = row
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, ""):
            labels[str(doc_id)] = str(value)
    if not labels:
        raise DataError(f"{path}: no row has a {field!r} value")
    return labels


def index_folders(root: Path, preferred: str) -> list[Path]:
    """``root/preferred`` first, then every other sub-folder of ``root`` (none when it is missing)."""
    if not root.is_dir():
        return []
    return [root / preferred] + sorted(p for p in root.glob("*") if p.name != preferred)


def index_root(out: str | Path, index_dir: str | Path | None) -> Path:
    """Where saved indexes are looked for (and built): ``index_dir``, by default ``out/indexes``."""
    return Path(index_dir or Path(out) / "indexes")


def doc_vectors(model: SentenceTransformer, name: str, dataset: Dataset, ids: list[str], root: Path, spec: IndexSpec,
                rebuild: bool, say: Say) -> np.ndarray:
    """The (normalised) vectors of ``ids``: from a matching saved index under ``root`` when there is one, else encoded.

    For the whole corpus a missing index is built (and kept) at ``root/<model slug>``
    (``rebuild``: replace a mismatching one there, else that is an error); for a sample
    only the sampled documents are encoded and nothing is written.
    """
    from index.build import normalize
    from retrieval.encode import doc_texts, encode
    from retrieval.retriever import build_or_load, find_matching_index

    stored = find_matching_index(model, dataset.corpus, spec, index_folders(root, slug(name)))
    if stored is not None:
        say(f"  reusing document embeddings of the index at {stored.path}")
    elif len(ids) == len(dataset.corpus):
        stored = build_or_load(model, name, dataset.corpus, root / slug(name), spec, rebuild=rebuild, source=dataset.source)
        say(f"  indexed the corpus at {stored.path}")
    vectors = stored.vectors() if stored is not None else None
    if vectors is not None:
        row = {d: i for i, d in enumerate(stored.meta.doc_ids)}
        return np.asarray(vectors[[row[d] for d in ids]], dtype=np.float32)
    return normalize(encode(model, doc_texts(dataset.corpus, ids), spec.document_prompt, spec.batch_size, role="document"))


def model_geometry(model: SentenceTransformer, name: str, dataset: Dataset, ids: list[str], classes: dict[str, str],
                   options: GeometryOptions, root: Path, say: Say) -> dict[str, Any]:
    """Encode what the measures need with one model and run :func:`retrieval.geometry_measure.measure_all`."""
    from retrieval.encode import encode
    from retrieval.geometry_measure import measure_all

    split, spec = options.split, options.spec
    docs = doc_vectors(model, name, dataset, ids, root, spec, options.index_dir is None, say)
    row = {d: i for i, d in enumerate(ids)}
    qrels = dataset.split(split)
    pairs = [(q, d) for q, judged in sorted(qrels.items()) for d, rel in sorted(judged.items()) if rel > 0 and d in row]
    if not pairs:
        raise UsageError(f"no judged (query, document) pair of split {split!r} among the documents measured")
    qids = sorted({q for q, _ in pairs})
    queries = dataset.split_queries(split)
    qvec = dict(zip(qids, encode(model, [queries[q] for q in qids], spec.query_prompt, spec.batch_size, role="query")))
    relevant = {q: {row[d] for d, rel in qrels[q].items() if rel > 0 and d in row} for q in qids}
    exclude = [sorted(relevant[q]) for q, _ in pairs]
    labelled = [d for d in ids if d in classes]
    result = measure_all(docs, np.stack([qvec[q] for q, _ in pairs]), docs[[row[d] for _, d in pairs]],
                         docs[[row[d] for d in labelled]] if labelled else None,
                         [classes[d] for d in labelled] if labelled else None, exclude, options.config)
    classes_from = f"labels:{options.labels}:{options.label_field}" if options.labels else f"qrels:{split}"
    result["source"] = {"data": dataset.source, "split": split, "model": name, "classes_from": classes_from}
    return result


def measure_geometry(
    dataset: Dataset,
    models: Sequence[str] | Mapping[str, SentenceTransformer],
    out: str | Path,
    options: GeometryOptions | None = None,
    load: Callable[[str], SentenceTransformer] | None = None,
    say: Say = logger.info,
) -> dict[str, dict[str, Any]]:
    """Measure each model and write ``out/geometry.json``; return its content.

    ``models``: names, loaded one at a time with ``load`` (default
    :func:`retrieval.models.load_model`), or ``{name: model}`` for models already loaded.
    ``say`` reports progress (reused or built indexes), by default to the log.
    """
    from index.atomic import write_text
    from retrieval.geometry import classes_from_qrels

    options = options or GeometryOptions()
    if load is None:
        from retrieval.models import load_model as load
    qrels = dataset.split(options.split)
    judged = {d for docs in qrels.values() for d, rel in docs.items() if rel > 0}
    ids = sample_doc_ids(list(dataset.corpus), judged, options.max_docs, options.config.seed)
    classes = read_labels(options.labels, options.label_field) if options.labels else classes_from_qrels(qrels, ids)
    say(f"{dataset.describe()}; measuring {len(ids)} documents, {len(set(classes.values()))} classes")
    root = index_root(out, options.index_dir)
    results = {}
    for name in models:
        say(f"model {name}")
        model = models[name] if isinstance(models, Mapping) else load(name)
        results[name] = model_geometry(model, name, dataset, ids, classes, options, root, say)
        del model  # a model loaded here is released before the next one loads
    write_text(Path(out) / "geometry.json", json.dumps(results, indent=1) + "\n")
    return results


def report_title(dataset: Dataset, split: str) -> str:
    """The first line of ``geometry.md`` (and the blank line after it)."""
    return f"# Geometry report: {dataset.name} ({split})\n\n"


def write_geometry_report(results: dict[str, dict[str, Any]], out: str | Path, title: str,
                          display: Mapping[str, str] | None = None, relative_to: str | Path | None = None,
                          sweep: dict | None = None) -> tuple[str, list[Path]]:
    """Draw the plots into ``out`` once and write ``out/geometry.md``; return the markdown section and the plots.

    ``display`` renames models in the plots and the returned section (``geometry.md``
    keeps the names of ``geometry.json``); the section's image links are relative to
    ``relative_to`` (default ``out``). ``sweep``: a temperature sweep's result, drawn too.
    """
    from index.atomic import write_text
    from retrieval.geometry_plots import draw_geometry, geometry_markdown

    out = Path(out)
    shown = {(display or {}).get(name, name): value for name, value in results.items()}
    files = draw_geometry(shown, out, sweep=sweep)
    write_text(out / "geometry.md", title + geometry_markdown(results, files, out) + "\n")
    return geometry_markdown(shown, files, relative_to if relative_to is not None else out), files


def run_geometry(
    dataset: Dataset,
    models: Sequence[str] | Mapping[str, SentenceTransformer],
    out: str | Path,
    options: GeometryOptions | None = None,
    *,
    load: Callable[[str], SentenceTransformer] | None = None,
    display: Mapping[str, str] | None = None,
    relative_to: str | Path | None = None,
    say: Say = logger.info,
) -> GeometryOutput:
    """:func:`measure_geometry` then :func:`write_geometry_report`: geometry.json, the plots and geometry.md, each once."""
    options = options or GeometryOptions()
    results = measure_geometry(dataset, models, out, options, load=load, say=say)
    markdown, files = write_geometry_report(results, out, report_title(dataset, options.split), display=display,
                                            relative_to=relative_to)
    return GeometryOutput(results=results, markdown=markdown, files=files)
