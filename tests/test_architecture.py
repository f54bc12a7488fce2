"""The floors of the house, checked: ``index`` <- ``retrieval`` <- ``finetune`` <- ``jobs`` <- ``cli`` <- ``app``.

A lower floor never imports a higher one and nothing imports ``app``:

* ``index`` uses the standard library, numpy and faiss only (so it can be lifted out alone);
* ``retrieval`` (the library: data, encoding, search, metrics, run files) imports none of
  ``finetune``, ``jobs``, ``cli``;
* ``finetune`` (training only) imports neither ``jobs`` nor ``cli`` (errors it shares with the
  commands live in ``retrieval.errors``);
* ``jobs`` (the main job and its report) composes the floors below and never imports ``cli``;
* ``cli`` (one module per command) may compose everything but ``app``, which ``retrieval app``
  launches by path (``cli.app_cmd.app_script``), never by import;
* ``app`` reads run folders through ``retrieval`` and imports neither ``jobs`` nor ``cli``;
  only ``app`` imports ``app``.

Every ``.py`` file of the six packages is parsed with :mod:`ast`, nothing is imported, and
every import counts: top-level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module("literal")``. A violation is reported as ``file:line``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("index", "retrieval", "finetune", "jobs", "cli", "app")
# what each floor may not import (besides app, which only app imports)
ABOVE = {"retrieval": ("finetune", "jobs", "cli"), "finetune": ("jobs", "cli"), "jobs": ("cli",), "app": ("jobs", "cli")}
INDEX_THIRD_PARTY = {"numpy", "faiss"}  # what index/ uses today (grep of its imports)

# Known violations, each with its reason: ("path", "imported module prefix"). Empty today.
ALLOWED: set[tuple[str, str]] = set()


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def imports(source: str, path: str = "<string>") -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``source``; ``from a import b`` gives ``a.b``."""
    package = Path(path).with_suffix("").parts
    if package and package[-1] != "__init__":
        package = package[:-1]
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's own package
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) == "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def rule_broken(path: str, module: str) -> str | None:
    """Why ``path`` (relative to the repository root, ``/``-separated) may not import ``module``, or None."""
    floor = path.split("/", 1)[0]
    top = module.split(".", 1)[0]
    if _under(module, "app") and floor != "app":
        return "nothing but app imports app"
    if floor == "index":
        if top not in sys.stdlib_module_names and top not in INDEX_THIRD_PARTY and top != "index":
            return f"index uses only the standard library, {', '.join(sorted(INDEX_THIRD_PARTY))} and itself"
    for higher in ABOVE.get(floor, ()):
        if _under(module, higher):
            return f"{floor} sits below {higher}"
    return None


def violations() -> list[str]:
    found = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            for line, module in imports(file.read_text(encoding="utf-8"), rel):
                why = rule_broken(rel, module)
                if why and not any(rel == path and _under(module, prefix) for path, prefix in ALLOWED):
                    found.append(f"{rel}:{line}: imports {module}: {why}")
    return found


def test_no_floor_imports_a_higher_one():
    found = violations()
    assert not found, "imports against the floors:\n" + "\n".join(found)


def test_every_package_is_scanned():
    for package in PACKAGES:
        assert len(list((ROOT / package).rglob("*.py"))) >= 3, f"{package}/ not found under {ROOT}"


def test_every_package_folder_is_a_regular_package():
    """A folder without ``__init__.py`` is a namespace package, which any installed package of the same name
    (``retrieval`` is a common one) shadows, wherever it stands on ``sys.path``."""
    for package in PACKAGES:
        for folder in [ROOT / package, *(p.parent for p in (ROOT / package).rglob("*.py"))]:
            if "__pycache__" not in folder.parts:
                assert (folder / "__init__.py").is_file(), f"{folder.relative_to(ROOT)}/ has no __init__.py"


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("index/store.py", "import torch", "index uses only"),
        ("index/store.py", "def f():\n    from retrieval.errors import DataError", "index uses only"),
        ("index/store.py", "from ..retrieval import readers", "index uses only"),
        ("retrieval/data.py", "def f():\n    import finetune.config", "below finetune"),
        ("retrieval/data.py", "import importlib\nimportlib.import_module('finetune.train')", "below finetune"),
        ("retrieval/rundir.py", "from jobs.tune_report import write_reports", "below jobs"),
        ("retrieval/data.py", "from app import loaders", "nothing but app"),
        ("cli/tune_cmd.py", "from app.main import main", "nothing but app"),
        ("finetune/train.py", "from cli.common import UsageError", "below cli"),
        ("finetune/train.py", "import cli", "below cli"),
        ("finetune/train.py", "from jobs.tune import tune", "below jobs"),
        ("jobs/tune.py", "from cli.common import echo", "below cli"),
        ("app/main.py", "from jobs import plots", "below jobs"),
        ("finetune/losses/core.py", "from ...app import ui", "nothing but app"),
    ],
)
def test_the_check_catches_a_planted_violation(path, source, expected):
    reasons = [rule_broken(path, module) for _, module in imports(source, path)]
    assert any(reason and expected in reason for reason in reasons), reasons


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("index/store.py", "import numpy as np\nimport faiss\nfrom faiss.contrib.ondisk import merge_ondisk\nimport json"),
        ("index/auto.py", "from index.build import normalize\nfrom . import meta"),
        ("cli/tune_cmd.py", "from jobs.tune import tune\nfrom finetune.config import from_args"),
        ("jobs/tune.py", "from finetune.train import finetune\nfrom retrieval.geometry_job import run_geometry"),
        ("finetune/train.py", "from retrieval.errors import UsageError\nfrom retrieval.readers import read_records"),
        ("app/main.py", "from app import loaders\nfrom finetune.config import FinetuneConfig"),
    ],
)
def test_the_check_lets_the_allowed_directions_through(path, source):
    found = [(module, rule_broken(path, module)) for _, module in imports(source, path)]
    assert found and all(reason is None for _, reason in found), found
