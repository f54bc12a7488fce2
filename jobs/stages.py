"""What lets a job's stage be skipped on a rerun: its inputs recorded in ``RUN/stages.json``.

:func:`cached` runs a stage, or returns its stored result when the run directory records
the same inputs for it (and its output files still exist); the fingerprints here are the
inputs the main job's stages depend on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrieval import rundir

logger = logging.getLogger(__name__)


def qrels_fingerprint(qrels: dict) -> str:
    return hashlib.sha256(json.dumps(qrels, sort_keys=True).encode()).hexdigest()[:16]


def model_stamp(folder: Path) -> str:
    """Names, sizes and times of the model's files: changes whenever the model is written again."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    stamp = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]


def recorded(run: rundir.RunDir, name: str) -> Any:
    """The inputs ``RUN/stages.json`` records for stage ``name`` (None when it never finished)."""
    stages_file = run.path / "stages.json"
    return (json.loads(stages_file.read_text()) if stages_file.exists() else {}).get(name)


def record(run: rundir.RunDir, name: str, inputs: Any) -> None:
    stages_file = run.path / "stages.json"
    done = json.loads(stages_file.read_text()) if stages_file.exists() else {}
    rundir.write_json(stages_file, {**done, name: inputs})


def cached(run: rundir.RunDir, name: str, inputs: dict[str, Any], fn: Callable[..., Any], *args: Any,
           outputs: tuple[Path, ...] = ()) -> Any:
    """``fn(*args)``, or its stored result when ``RUN/stages.json`` records the same ``inputs`` for ``name``.

    Results are kept as JSON under ``RUN/stages/``, so a rerun with nothing changed skips the stage;
    changing an input reruns it (and only the stages that depend on that input).
    """
    value_file = run.path / "stages" / f"{name}.json"
    if recorded(run, name) == inputs and value_file.exists() and all(p.exists() for p in outputs):
        logger.info("%s: inputs unchanged, reusing %s", name, value_file)
        return json.loads(value_file.read_text())["value"]
    value = fn(*args)
    rundir.write_json(value_file, {"value": json.loads(json.dumps(value, default=float))})
    record(run, name, inputs)
    return json.loads(value_file.read_text())["value"]  # as a rerun will see it (NaN as null)
