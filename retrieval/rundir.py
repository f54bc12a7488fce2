"""The run directory: what ``retrieval tune`` writes and the app reads.

One place names every file of a run, so writer and reader cannot drift apart::

    RUN/run.json             {"data", "split", "base_model", "tuned_model" ("model" or null), "created", "settings",
                              "recommendation": {"system", "deploy", "reason", "warnings", "evidence", ...}}
    RUN/model/               the tuned sentence-transformers model (absent for a base-only run)
    RUN/indexes/base/        the corpus under the base model (an ``index`` directory)
    RUN/indexes/tuned/       the corpus under the tuned model; absent when the tuned model's
                             document side is the base model's: then both models search indexes/base
    RUN/metrics.json         {system: {ranx metric: mean}}
    RUN/comparison.json      ranx ``compare(...).to_dict()`` (p-values, win/tie/loss)
    RUN/per_query.json       {"metric", "systems": {system: {qid: score}},
                              "first_relevant_rank": {system: {qid: rank or null}}}
    RUN/curves.json          {"k": [1..100], "recall": {system: [recall@k ...]}}
    RUN/runs/<system>.trec
    RUN/geometry/geometry.json (+ PNGs), only when the geometry step ran
    RUN/report.md, RUN/report.html

Readers return ``None`` for a missing file and raise :class:`DataError` naming the
file for an unreadable one. Everything is JSON: nothing here unpickles. Paths read
from ``run.json`` are resolved and refused when they leave the run directory.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.atomic import write_text
from retrieval.errors import DataError

CURVE_KS = range(1, 101)


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is read until a ``read_*`` function is called)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    run_json = property(lambda self: self.path / "run.json")
    model_dir = property(lambda self: self.path / "model")
    indexes = property(lambda self: self.path / "indexes")
    base_index = property(lambda self: self.path / "indexes" / "base")
    tuned_index = property(lambda self: self.path / "indexes" / "tuned")
    metrics_json = property(lambda self: self.path / "metrics.json")
    comparison_json = property(lambda self: self.path / "comparison.json")
    per_query_json = property(lambda self: self.path / "per_query.json")
    curves_json = property(lambda self: self.path / "curves.json")
    runs_dir = property(lambda self: self.path / "runs")
    geometry_dir = property(lambda self: self.path / "geometry")
    geometry_json = property(lambda self: self.path / "geometry" / "geometry.json")
    report_md = property(lambda self: self.path / "report.md")
    report_html = property(lambda self: self.path / "report.html")

    def run_file(self, system: str) -> Path:
        return self.inside(Path("runs") / f"{system}.trec")

    def inside(self, relative: str | Path) -> Path:
        """``relative`` resolved under the run directory; anything that escapes it raises DataError."""
        try:
            root = self.path.resolve()
            target = (root / relative).resolve()
        except (OSError, RuntimeError) as err:  # a symlink loop, for one
            raise DataError(f"{self.run_json}: path {str(relative)!r} cannot be resolved ({err})") from None
        if target != root and root not in target.parents:
            raise DataError(f"{self.run_json}: path {str(relative)!r} points outside the run directory {root}")
        return target

    def tuned_model_path(self, info: dict[str, Any]) -> Path | None:
        """The tuned model folder named by ``run.json`` (None for a base-only run)."""
        rel = info.get("tuned_model")
        return None if not rel else self.inside(rel)

    def index_for(self, system: str) -> Path:
        """Which index a system's queries search: its own, else the shared base index."""
        if system == "tuned" and (self.tuned_index / "meta.json").exists():
            return self.inside(Path("indexes") / "tuned")
        return self.inside(Path("indexes") / "base")


def as_rundir(run: RunDir | str | Path) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir(Path(run))


def _read_json(path: Path, shape: type = dict) -> Any | None:
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None
    if not isinstance(obj, shape):
        raise DataError(f"{path}: expected a JSON {shape.__name__}, got {type(obj).__name__}")
    return obj


def _need(path: Path, obj: dict, keys: Iterable[str]) -> dict:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)}")
    return obj


def read_info(run: RunDir | str | Path) -> dict[str, Any] | None:
    run = as_rundir(run)
    info = _read_json(run.run_json)
    return None if info is None else _need(run.run_json, info, ("data", "base_model"))


def read_metrics(run: RunDir | str | Path) -> dict[str, dict[str, float]] | None:
    return _read_json(as_rundir(run).metrics_json)


def read_comparison(run: RunDir | str | Path) -> dict[str, Any] | None:
    return _read_json(as_rundir(run).comparison_json)


def read_per_query(run: RunDir | str | Path) -> dict[str, Any] | None:
    run = as_rundir(run)
    obj = _read_json(run.per_query_json)
    return None if obj is None else _need(run.per_query_json, obj, ("metric", "systems"))


def read_curves(run: RunDir | str | Path) -> dict[str, Any] | None:
    run = as_rundir(run)
    obj = _read_json(run.curves_json)
    if obj is None:
        return None
    _need(run.curves_json, obj, ("k", "recall"))
    for system, values in obj["recall"].items():
        if len(values) != len(obj["k"]):
            raise DataError(f"{run.curves_json}: {system} has {len(values)} recall values for {len(obj['k'])} cut-offs")
    return obj


def read_geometry(run: RunDir | str | Path) -> dict[str, Any] | None:
    return _read_json(as_rundir(run).geometry_json)


def _finite(obj: Any) -> Any:
    """NaN and infinities (ranx gives a NaN p-value for identical runs) as null: strict JSON for every reader."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (NaN -> null), atomically (a crash leaves the old file or none)."""
    write_text(path, json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_info(
    run: RunDir | str | Path,
    data: str,
    base_model: str,
    tuned_model: str | None = "model",
    split: str = "test",
    settings: dict[str, Any] | None = None,
    recommendation: dict[str, Any] | None = None,
    data_path: str | None = None,
) -> dict[str, Any]:
    """Write ``run.json``; ``tuned_model`` is relative to the run directory (None: base only).

    ``recommendation`` (:func:`retrieval.recommend.recommend`'s ``to_dict()``) says which system to deploy.
    """
    run = as_rundir(run)
    if tuned_model is not None:
        run.inside(tuned_model)
    info = {
        "data": data,
        "split": split,
        "base_model": base_model,
        "tuned_model": tuned_model,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings or {},
    }
    if data_path is not None:  # absolute: found again from any working directory
        info["data_path"] = data_path
    if recommendation is not None:
        info["recommendation"] = recommendation
    write_json(run.run_json, info)
    return info


def recall_curve(qrels: dict[str, dict[str, int]], run, ks: Iterable[int] = CURVE_KS) -> list[float]:
    """Mean recall@k for each k (ranx, one call for every cut-off), over the judged queries."""
    from retrieval.evaluate import evaluate

    metrics = [f"recall@{k}" for k in ks]
    scores = evaluate(qrels, {"run": run}, metrics)["run"]
    return [scores[m] for m in metrics]


def curves(qrels: dict[str, dict[str, int]], runs: dict[str, Any], ks: Iterable[int] = CURVE_KS) -> dict[str, Any]:
    """The ``curves.json`` payload for several systems."""
    ks = list(ks)
    return {"k": ks, "recall": {name: recall_curve(qrels, run, ks) for name, run in runs.items()}}


def first_relevant_rank(qrels: dict[str, dict[str, int]], run) -> dict[str, int | None]:
    """1-based rank of the first document judged relevant (> 0) per judged query; None if none was retrieved.

    Ranks follow the scores, best first; equal scores keep the run's order.
    """
    data = run.to_dict() if hasattr(run, "to_dict") else run
    out: dict[str, int | None] = {}
    for qid, judged in qrels.items():
        ranked = sorted(data.get(qid, {}).items(), key=lambda kv: -kv[1])
        out[qid] = next((r for r, (doc, _) in enumerate(ranked, 1) if judged.get(doc, 0) > 0), None)
    return out


def per_query_payload(qrels: dict[str, dict[str, int]], runs: dict[str, Any], metric: str = "ndcg@10") -> dict[str, Any]:
    """The ``per_query.json`` payload: each system's per-query ``metric`` and first relevant rank."""
    from retrieval.evaluate import per_query

    return {
        "metric": metric,
        "systems": {name: per_query(qrels, run, metric) for name, run in runs.items()},
        "first_relevant_rank": {name: first_relevant_rank(qrels, run) for name, run in runs.items()},
    }
