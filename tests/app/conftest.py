"""A complete small run directory, written the way ``retrieval tune`` writes one (through ``retrieval.rundir``).

The base model is the tiny random BERT; the "tuned" model is the same network with
its weights nudged, so the two rank differently. Variants: with its own tuned index,
query-side tuning (a Router: nudged query route, base document route, no ``indexes/tuned``),
and base only.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import make_beir

APP_MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Undo what AppTest leaves behind: it runs the page as ``sys.modules["__main__"]``.

    Left in place, every later ``multiprocessing`` spawn (shard encoding, torchrun
    helpers) would re-run the app page in its children and crash them.
    """
    main = sys.modules.get("__main__")
    yield
    sys.modules["__main__"] = main


def nudged_copy(src: Path, dest: Path, scale: float = 0.5) -> Path:
    """A copy of the model at ``src`` whose weights differ (a stand-in for fine-tuning)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(src), device="cpu")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * scale * param.std().clamp_min(1e-3))
    model.save(str(dest))
    return dest


def build_run(root: Path, base_model: Path, variant: str = "tuned-index") -> Path:
    """Write a run directory under ``root``: variant ``tuned-index``, ``query-only`` or ``base-only``."""
    from sentence_transformers import SentenceTransformer

    from retrieval import rundir
    from retrieval.retriever import build_or_load
    from retrieval.sources import resolve
    from retrieval.systems import evaluate_systems

    data = make_beir(root / "data")
    dataset = resolve(str(data), download=False)
    run = rundir.RunDir(root / "run")
    qrels, queries = dataset.split("test"), dataset.split_queries("test")
    base = SentenceTransformer(str(base_model), device="cpu")
    stored = build_or_load(base, str(base_model), dataset.corpus, run.base_index, progress=False, source=str(data))
    systems = {"base": (base, stored)}
    tuned_rel = None
    if variant != "base-only":
        tuned_rel = "model"
        if variant == "tuned-index":
            tuned = SentenceTransformer(str(nudged_copy(base_model, run.model_dir)), device="cpu")
            tuned_index = build_or_load(tuned, "model", dataset.corpus, run.tuned_index, progress=False, source=str(data))
        else:  # query-side tuning, as `retrieval tune --mode query` does: a Router whose document route is the base
            from sentence_transformers.base.modules import Router

            query = SentenceTransformer(str(nudged_copy(base_model, root / "query-side")), device="cpu")
            router = Router.for_query_document(query_modules=list(query), document_modules=list(base))
            SentenceTransformer(modules=[router], device="cpu").save(str(run.model_dir))
            tuned, tuned_index = SentenceTransformer(str(run.model_dir), device="cpu"), stored
        systems["tuned"] = (tuned, tuned_index)
    evaluate_systems(run, systems, queries, qrels)  # the files the main job writes, written the same way
    rundir.write_info(run, str(data), str(base_model), tuned_rel, settings={"variant": variant})
    return run.path


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A run with a tuned model and its own index (shared by the read-only tests: do not modify)."""
    return build_run(tmp_path_factory.mktemp("run"), tiny_model_dir, "tuned-index")


@pytest.fixture(scope="session")
def built_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    """Each variant built once per session, on first use."""
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            cache[variant] = build_run(tmp_path_factory.mktemp(variant), tiny_model_dir, variant)
        return cache[variant]

    return get


@pytest.fixture
def fresh_run(tmp_path: Path, built_runs):
    """A private copy of a run directory of the given variant (safe to damage)."""
    return lambda variant="tuned-index": Path(shutil.copytree(built_runs(variant), tmp_path / variant))


@pytest.fixture
def app_test(monkeypatch: pytest.MonkeyPatch):
    """``AppTest`` of the entry script for a run directory, passed as ``streamlit run`` passes it (argv)."""
    from streamlit.testing.v1 import AppTest

    def make(path: Path | str) -> AppTest:
        monkeypatch.setattr(sys, "argv", [str(APP_MAIN), str(path)])
        monkeypatch.delenv("RETRIEVAL_RUN_DIR", raising=False)
        return AppTest.from_file(str(APP_MAIN), default_timeout=60)

    return make
