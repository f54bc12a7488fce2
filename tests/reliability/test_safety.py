"""Untrusted files and models never run code: no remote code by default, no unpickling, reads stay in the run.

* every command's ``--trust-remote-code`` is off unless given, and what reaches
  ``SentenceTransformer`` is exactly that flag;
* a model folder naming a class outside sentence-transformers is refused (the
  installed sentence-transformers 6 enforces this without trust_remote_code);
* the project's own code never calls ``pickle.load``, ``torch.load`` without
  ``weights_only=True``, ``np.load(..., allow_pickle=True)``, ``joblib``/``dill``
  loads or ``yaml.load`` (an AST scan, so multi-line calls are read right);
* ``RunDir.inside`` keeps the app's reads inside the run directory;
* very long queries are cut before tokenising (needs the retriever patch in the report).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
from pathlib import Path

import pytest

from retrieval.errors import DataError
from retrieval.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]
OWN_CODE = ["index", "retrieval", "finetune", "app", "bench"]


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


def test_every_trust_remote_code_flag_is_off_by_default():
    from cli import build_parser

    flags = {}
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            if action.dest == "trust_remote_code":
                flags[name] = (action.default, type(action).__name__)
    assert {"eval", "index build", "search"} <= set(flags)
    assert all(v == (False, "_StoreTrueAction") for v in flags.values()), flags


class _Recorder:
    calls: list[dict] = []

    def __init__(self, *args, **kwargs):
        _Recorder.calls.append(kwargs)
        self.model_card_data = argparse.Namespace(base_model=None)


@pytest.mark.parametrize("argv, expected", [
    (["eval", "--data", "d", "--out", "o"], False),
    (["eval", "--data", "d", "--out", "o", "--trust-remote-code"], True),
])
def test_the_cli_passes_trust_remote_code_to_sentence_transformers_only_when_asked(monkeypatch, argv, expected):
    import sentence_transformers

    from cli import build_parser
    from cli.common import load_model_from_args

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _Recorder)
    _Recorder.calls = []
    args = build_parser().parse_args(argv)
    load_model_from_args(args, "some/model")
    assert _Recorder.calls == [{"device": None, "trust_remote_code": expected}]


def test_load_model_defaults_to_no_remote_code(monkeypatch):
    import sentence_transformers

    from retrieval.models import load_model

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", _Recorder)
    _Recorder.calls = []
    load_model("some/model")
    assert _Recorder.calls[0]["trust_remote_code"] is False


def test_no_call_site_hard_codes_trust_remote_code_true():
    hits = []
    for path in _own_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "trust_remote_code" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                        hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert hits == []


def test_a_model_folder_naming_foreign_code_is_refused_without_the_flag(tiny_model_path):
    from retrieval.models import load_model

    modules = json.loads((tiny_model_path / "modules.json").read_text())
    modules[1]["type"] = "os.system"  # what a hostile folder would name
    (tiny_model_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="trust_remote_code|not part of Sentence Transformers"):
        load_model(str(tiny_model_path), device="cpu")


def _own_files() -> list[Path]:
    files = [p for d in OWN_CODE if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py")]
    return sorted(files + list(ROOT.glob("*.py")))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        const = lambda key: getattr(kw.get(key), "value", None)  # noqa: E731
        if name in ("pickle.load", "pickle.loads", "cPickle.load", "joblib.load", "dill.load", "dill.loads",
                    "pd.read_pickle", "pandas.read_pickle", "marshal.loads"):
            found.append((node.lineno, name))
        elif name == "torch.load" and const("weights_only") is not True:
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif name in ("np.load", "numpy.load") and const("allow_pickle") is True:
            found.append((node.lineno, "np.load(allow_pickle=True)"))
        elif name == "yaml.load" and "Safe" not in ast.unparse(kw.get("Loader", ast.Constant(""))):
            found.append((node.lineno, "yaml.load without SafeLoader"))
    return found


def test_the_scanner_finds_each_unsafe_load():
    code = ("import pickle, torch, numpy as np\npickle.load(f)\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
            "torch.load(\n  p,\n  map_location='cpu',\n  weights_only=True,\n)\nnp.load(p, allow_pickle=True)\nnp.load(p)\n")
    assert [line for line, _ in _unsafe_loads(ast.parse(code))] == [2, 3, 4, 10]


def test_our_code_never_unpickles():
    hits = [f"{p.relative_to(ROOT)}:{line}: {what}" for p in _own_files() for line, what in _unsafe_loads(ast.parse(p.read_text(encoding="utf-8")))]
    assert hits == []


# --- the app reads only inside the run directory ------------------------------------------------


@pytest.mark.parametrize("escape", ["..", "../other/run.json", "runs/../../x", "./model/./../../x", "//etc/passwd",
                                    "runs/../../../../../../etc/passwd"])
def test_inside_refuses_dot_dot_and_absolute_escapes(tmp_path, escape):
    (tmp_path / "run").mkdir()
    with pytest.raises(DataError, match="outside the run directory"):
        RunDir(tmp_path / "run").inside(escape)


def test_inside_accepts_paths_that_stay_in_the_run_even_through_dot_dot(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.inside("model/../runs/x.trec") == (tmp_path / "run" / "runs" / "x.trec").resolve()
    assert run.inside(".") == (tmp_path / "run").resolve()


def test_a_symlinked_file_or_a_run_name_pointing_out_is_refused(tmp_path):
    (tmp_path / "run" / "runs").mkdir(parents=True)
    (tmp_path / "secret.trec").write_text("q Q0 d 1 1 x\n")
    (tmp_path / "run" / "runs" / "base.trec").symlink_to(tmp_path / "secret.trec")
    run = RunDir(tmp_path / "run")
    with pytest.raises(DataError, match="outside"):
        run.run_file("base")
    with pytest.raises(DataError, match="outside"):
        run.run_file("../../secret")


def test_a_symlink_inside_the_run_that_stays_inside_is_allowed(tmp_path):
    (tmp_path / "run" / "real").mkdir(parents=True)
    (tmp_path / "run" / "model").symlink_to(tmp_path / "run" / "real")
    assert RunDir(tmp_path / "run").tuned_model_path({"tuned_model": "model"}) == (tmp_path / "run" / "real").resolve()


def test_a_symlink_loop_is_a_data_error_not_a_crash(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model").symlink_to(tmp_path / "run" / "model")
    with pytest.raises(DataError):
        RunDir(tmp_path / "run").inside("model")


def test_an_index_folder_symlinked_out_of_the_run_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "meta.json").write_text("{}")
    (tmp_path / "run" / "indexes").mkdir(parents=True)
    (tmp_path / "run" / "indexes" / "tuned").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="outside"):
        RunDir(tmp_path / "run").index_for("tuned")


# --- query length -------------------------------------------------------------------------------


def test_a_huge_query_is_cut_before_tokenising_with_a_warning(tiny_model, tmp_path, caplog, monkeypatch):
    import retrieval.retriever as retriever

    corpus = {f"d{i}": {"title": "", "text": f"cats purr number {i}"} for i in range(5)}
    stored = retriever.build_or_load(tiny_model, "tiny", corpus, tmp_path / "idx", progress=False)
    seen: list[list[str]] = []
    real = retriever.encode
    monkeypatch.setattr(retriever, "encode", lambda model, texts, *a, **k: seen.append(texts) or real(model, texts, *a, **k))
    with caplog.at_level(logging.WARNING):
        run = retriever.search(stored, tiny_model, {"long": "cats purr " * 1_000_000, "short": "cats"}, k=3, progress=False)
    assert [len(t) for t in seen[0]] == [retriever.MAX_QUERY_CHARS, 4]
    assert "1 query" in caplog.text and str(retriever.MAX_QUERY_CHARS) in caplog.text
    assert set(run.to_dict()) == {"long", "short"}
