"""Load a run directory once per server (``st.cache_resource``), keyed by its resolved path.

Which run: the first argument after ``--`` (``streamlit run app/main.py -- RUN``, what
``retrieval app RUN`` does), else ``$RETRIEVAL_RUN_DIR``. Every path read comes from
inside the run directory except the dataset (the spec in ``run.json``, resolved
offline) and the base model (its name). Model folders holding pickle-format weights
are refused: the app never unpickles.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from app.compute import ranked
from retrieval.readers import DataError
from retrieval.rundir import RunDir, read_comparison, read_curves, read_geometry, read_info, read_metrics, read_per_query

ENV = "RETRIEVAL_RUN_DIR"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class RunError(Exception):
    """The run cannot be shown; ``command`` (if any) is what creates or repairs it."""

    def __init__(self, message: str, command: str | None = None):
        super().__init__(message)
        self.command = command


@dataclass
class Side:
    """One system the app searches with: its model and the index its queries go to."""

    name: str
    model: object
    index: object


@dataclass
class LoadedRun:
    run: RunDir
    info: dict
    sides: dict[str, Side]
    corpus: dict[str, dict[str, str]] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    corpus_warning: str = ""


def run_dir_arg(argv: list[str] | None = None) -> str | None:
    argv = sys.argv[1:] if argv is None else argv
    given = [a for a in argv if not a.startswith("-")]
    return given[0] if given else os.environ.get(ENV) or None


def tune_command(run_path: str | Path, data: str = "DATA") -> str:
    return f"retrieval tune --data {data} --out {run_path}"


def refuse_pickles(folder: Path) -> None:
    found = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise RunError(f"{folder}: holds pickle-format files ({', '.join(found[:3])}); the app loads safetensors models only")


def _load_model(name: str, local: Path | None = None):
    from retrieval.models import load_model

    if local is not None:
        refuse_pickles(local)
        return load_model(str(local), device="cpu")
    if Path(name).is_dir():
        refuse_pickles(Path(name))
    return load_model(name, device="cpu")


def _load_index(path: Path, run_path: Path, data: str):
    from index import IndexIntegrityError, load_index

    if not (path / "meta.json").exists():
        raise RunError(f"{path}: index missing", tune_command(run_path, data))
    try:
        return load_index(path)
    except IndexIntegrityError as err:
        raise RunError(str(err), tune_command(run_path, data)) from None


@st.cache_resource(show_spinner="Loading models and indexes…")
def load_run(path: str) -> LoadedRun:
    """Models, indexes and dataset of the run at ``path`` (raises :class:`RunError` with a fix)."""
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise RunError(f"{path}: no run directory here", tune_command(path))
    try:
        info = read_info(run)
    except DataError as err:
        raise RunError(str(err), tune_command(path)) from None
    if info is None:
        raise RunError(f"{run.run_json}: missing, so this is not a finished run", tune_command(path))
    data = str(info["data"])
    try:
        tuned_path = run.tuned_model_path(info)
    except DataError as err:
        raise RunError(str(err)) from None
    base_index = _load_index(run.base_index, run.path, data)  # the cheap checks first, then the models
    sides = {"base": Side("base", _load_model(str(info["base_model"])), base_index)}
    if tuned_path is not None:
        if not tuned_path.is_dir():
            raise RunError(f"{tuned_path}: tuned model missing", tune_command(path, data))
        tuned_index = _load_index(run.index_for("tuned"), run.path, data)
        sides["tuned"] = Side("tuned", _load_model("", tuned_path), tuned_index)
    loaded = LoadedRun(run=run, info=info, sides=sides)
    _attach_dataset(loaded, data, str(info.get("split") or "test"), info.get("data_path"))
    for side in sides.values():  # first query pays torch and ranx (numba) warm-up: do it while loading
        ranked(side.index, side.model, "warm up")
    return loaded


def _attach_dataset(loaded: LoadedRun, spec: str, split: str, data_path: str | None = None) -> None:
    """The run's dataset: the absolute path ``run.json`` recorded when it still exists, else ``spec`` as given."""
    from retrieval.sources import resolve

    if data_path and Path(data_path).exists():
        spec = data_path
    try:
        dataset = resolve(spec, download=False)
        loaded.corpus, loaded.queries = dataset.corpus, dataset.split_queries(split)
        loaded.qrels = dataset.split(split)
    except DataError as err:
        loaded.corpus_warning = f"titles, snippets and relevance marks unavailable: {err}"


@st.cache_data(show_spinner=False)
def artefacts(path: str, mtime_key: tuple) -> dict:
    """The run's JSON results (re-read when a file changes: ``mtime_key`` holds their times)."""
    run = RunDir(Path(path))
    return {
        "metrics": read_metrics(run), "comparison": read_comparison(run), "per_query": read_per_query(run),
        "curves": read_curves(run), "geometry": read_geometry(run),
    }


def read_artefacts(run: RunDir) -> dict:
    files = (run.metrics_json, run.comparison_json, run.per_query_json, run.curves_json, run.geometry_json)
    return artefacts(str(run.path), tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files))


def current() -> LoadedRun:
    """The run named on the command line, loaded (or an error on the page and a stop)."""
    arg = run_dir_arg()
    if arg is None:
        _stop("No run directory given.", f"retrieval app RUN_DIR   (a RUN_DIR made by: {tune_command('RUN_DIR')})")
    path = str(Path(arg).expanduser().resolve())
    try:
        return load_run(path)
    except RunError as err:
        _stop(str(err), err.command)
    except Exception as err:  # a model or index that fails to load: say what, no traceback page
        _stop(f"{type(err).__name__}: {err}", tune_command(path))
    raise AssertionError("unreachable")


def _stop(message: str, command: str | None) -> None:
    st.error(message)
    if command:
        st.markdown("Create or repair it with:")
        st.code(command, language="bash")
    st.stop()
