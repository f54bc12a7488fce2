"""The command line end to end on the toy dataset with the tiny model."""

from __future__ import annotations

import json

import pytest

from cli import build_parser, main


def _agrees_with_trec_eval(beir_dir, trec_file, scores):
    """nDCG@10 and Recall@100 of the run file by trec_eval's own code (pytrec_eval) equal metrics.json's."""
    import pytrec_eval

    from retrieval.sources import resolve

    qrels = resolve(str(beir_dir)).split("test")
    run: dict[str, dict[str, float]] = {}
    for line in trec_file.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, {})[doc] = float(score)
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run)
    for ours, theirs in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100")):
        mean = sum(per_query[q][theirs] for q in qrels if q in per_query) / len(qrels)
        assert scores[ours] == pytest.approx(mean, abs=1e-6), ours


def test_eval_writes_metrics_report_and_runs(tiny_model_path, beir_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--data", str(beir_dir), "--model", str(tiny_model_path), "--bm25", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {str(tiny_model_path), "bm25"}
    for scores in metrics.values():
        assert {"ndcg@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@100", "mrr@10", "map@100"} <= set(scores)
    report = (out / "report.md").read_text()
    assert "## Significance" in report and "bm25" in report
    assert f"{metrics['bm25']['ndcg@10']:.4f}" in report  # the report prints metrics.json's numbers
    _agrees_with_trec_eval(beir_dir, out / "runs" / "bm25.trec", metrics["bm25"])
    assert "ndcg@10" in capsys.readouterr().out


def test_eval_through_an_approximate_index_reports_it_beside_exact_search(tiny_model_path, beir_dir, tmp_path):
    model = str(tiny_model_path)
    flat, ann = tmp_path / "flat", tmp_path / "ann"
    assert main(["eval", "--data", str(beir_dir), "--model", model, "--out", str(flat)]) == 0
    assert main(["eval", "--data", str(beir_dir), "--model", model, "--factory", "IVF4,Flat", "--out", str(ann)]) == 0
    metrics = json.loads((ann / "metrics.json").read_text())
    assert set(metrics) == {model, f"{model} (exact)"}
    assert metrics[f"{model} (exact)"] == pytest.approx(json.loads((flat / "metrics.json").read_text())[model])
    report = (ann / "report.md").read_text()
    assert "## What the approximate index costs" in report and "nprobe" in report
    meta = json.loads((ann / "indexes").glob("*/meta.json").__next__().read_text())
    assert meta["factory"] == "IVF4,Flat" and meta["search_params"]["nprobe"] >= 1


def test_index_build_then_search_prints_the_planted_document(tiny_model_path, beir_dir, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert main(["index", "build", "--data", str(beir_dir), "--model", str(tiny_model_path), "--out", str(idx)]) == 0
    capsys.readouterr()
    assert main(["search", "fish 1 fish swim in rivers lakes and oceans number 1", "--index", str(idx), "--k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[2] == "fish1" and "fish 1" in lines[1]


def test_building_over_another_index_is_refused_without_overwrite(tiny_model_path, beir_dir, tmp_path, capsys):
    idx = tmp_path / "idx"
    args = ["index", "build", "--data", str(beir_dir), "--model", str(tiny_model_path), "--out", str(idx)]
    assert main(args) == 0
    assert main(args + ["--document-prompt", "passage: "]) == 2
    assert "document_prompt" in capsys.readouterr().err
    assert main(args + ["--document-prompt", "passage: ", "--overwrite"]) == 0


def test_bad_data_is_one_line_error_not_a_traceback(tmp_path, beir_dir, capsys):
    with open(beir_dir / "corpus.jsonl", "a") as f:
        f.write("{oops\n")
    assert main(["eval", "--data", str(beir_dir), "--bm25", "--out", str(tmp_path / "o"), "--model", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "corpus.jsonl:25: malformed JSON" in err[-1]


def test_config_file_supplies_defaults_and_flags_override(tiny_model_path, beir_dir, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": [str(tiny_model_path)], "k": 7, "bm25": True}))
    out = tmp_path / "out"
    assert main(["eval", "--data", str(beir_dir), "--config", str(config), "--k", "5", "--out", str(out)]) == 0
    assert set(json.loads((out / "metrics.json").read_text())) == {str(tiny_model_path), "bm25"}
    assert "\"k\": 5" in (out / "report.md").read_text()


def test_unknown_config_key_is_refused(beir_dir, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"no_such_option": 1}))
    assert main(["eval", "--data", str(beir_dir), "--config", str(config), "--out", str(tmp_path)]) == 2
    assert "unknown option 'no_such_option'" in capsys.readouterr().err


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from _subparsers(sub)


def test_every_option_of_every_command_has_help():
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            if action.dest not in ("help",) and action.option_strings:
                assert action.help, f"`retrieval {name} {action.option_strings[0]}` has no help text"
