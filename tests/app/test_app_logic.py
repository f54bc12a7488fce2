"""The page logic, driven by Streamlit's AppTest against run directories built in tmp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app import compute


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


def _test_query(run: Path, qid: str = "q-cat") -> str:
    from retrieval.sources import resolve

    info = json.loads((run / "run.json").read_text())
    return resolve(info["data"], download=False).queries[qid]


def _columns(at) -> tuple[list[str], list[str]]:
    """Doc ids shown in the base and the tuned column, in rank order (captions read ``score … · `id```)."""
    ids = [c.value.split("`")[1] for c in at.caption if c.value.startswith("score ")]
    half = len(ids) // 2
    return ids[:half], ids[half:]


def _hit_lines(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**") and ".** " in m.value[:8]]


def test_search_shows_both_columns_marks_the_relevant_document_and_its_rank(run_dir, app_test):
    at = app_test(run_dir).run()
    assert not at.exception, at.exception
    at.number_input(key="k").set_value(24)  # the whole toy corpus: the relevant document is on both sides
    at.text_input(key="query").input(_test_query(run_dir, "q-cat")).run()
    assert not at.exception and not at.error
    text = _texts(at)
    assert "Base model" in text and "Tuned model" in text and "Test query `q-cat`" in text
    base, tuned = _columns(at)
    assert len(base) == len(tuned) == 24
    lines = _hit_lines(at)
    marked = [i for i, line in enumerate(lines) if "relevant]" in line]
    assert marked == [base.index("cat0"), 24 + tuned.index("cat0")]  # q-cat's one relevant document
    firsts = [m.value for m in at.markdown if m.value.startswith("First relevant document")]
    assert firsts == [f"First relevant document: **rank {base.index('cat0') + 1}**",
                      f"First relevant document: **rank {tuned.index('cat0') + 1}**"]


def test_tuned_hits_carry_their_move_relative_to_the_base_ranking(run_dir, app_test):
    at = app_test(run_dir).run()
    at.number_input(key="k").set_value(24)
    at.text_input(key="query").input("rain falls").run()
    base, tuned = _columns(at)
    lines = _hit_lines(at)
    assert base != tuned  # the nudged model ranks differently
    assert not any("badge[" in line for line in lines[:24])  # no badges on the base side
    for new_rank, (doc, line) in enumerate(zip(tuned, lines[24:]), 1):
        old_rank = base.index(doc) + 1
        want = "=" if old_rank == new_rank else (f"↑{old_rank - new_rank}" if old_rank > new_rank else f"↓{new_rank - old_rank}")
        assert f"badge[{want}]" in line, (doc, line)


def test_a_document_missing_from_the_base_ranking_is_badged_new():
    ranking_before = [("a", 0.9), ("b", 0.8)]
    shown = compute.hits([("c", 0.95), ("a", 0.9), ("b", 0.7)], 3, {}, None, ranking_before)
    assert [h.badge for h in shown] == ["new", "↓1", "↓1"]


def test_results_per_side_follow_the_chosen_k(run_dir, app_test):
    at = app_test(run_dir).run()
    at.number_input(key="k").set_value(3)
    at.text_input(key="query").input("cats purr").run()
    assert len(_hit_lines(at)) == 6  # 3 per side


def test_an_empty_query_gives_a_hint_and_no_search(run_dir, app_test):
    at = app_test(run_dir).run()
    at.text_input(key="query").input("   ").run()
    assert any("Type a query" in i.value for i in at.info)
    assert "Base model" not in _texts(at)


def test_an_overlong_query_is_cut_with_a_notice(run_dir, app_test):
    at = app_test(run_dir).run()
    at.text_input(key="query").input("cats " * 400).run()
    assert not at.exception
    assert any(f"first {compute.MAX_QUERY_CHARS:,}" in w.value for w in at.warning)
    assert "Base model" in _texts(at)


def test_a_missing_run_directory_names_the_command_that_creates_it(tmp_path, app_test):
    at = app_test(tmp_path / "nowhere").run()
    assert at.error and "no run directory" in at.error[0].value
    assert any(f"retrieval tune --data DATA --out {tmp_path / 'nowhere'}" in c.value for c in at.code)


def test_a_missing_index_names_the_command_that_recreates_it(fresh_run, app_test):
    run = fresh_run()
    shutil.rmtree(run / "indexes" / "base")
    at = app_test(run).run()
    assert at.error and "index missing" in at.error[0].value
    data = json.loads((run / "run.json").read_text())["data"]
    assert any(c.value == f"retrieval tune --data {data} --out {run}" for c in at.code)


def test_a_tuned_model_path_outside_the_run_is_refused(fresh_run, app_test):
    run = fresh_run("base-only")
    info = json.loads((run / "run.json").read_text())
    info["tuned_model"] = "../data"
    (run / "run.json").write_text(json.dumps(info))
    at = app_test(run).run()
    assert at.error and "outside the run directory" in at.error[0].value


def test_a_model_folder_with_pickled_weights_is_refused(fresh_run, app_test):
    run = fresh_run("query-only")
    (run / "model" / "pytorch_model.bin").write_bytes(b"not loaded")
    at = app_test(run).run()
    assert at.error and "pickle" in at.error[0].value


def test_a_base_only_run_shows_one_column(fresh_run, app_test):
    at = app_test(fresh_run("base-only")).run()
    at.text_input(key="query").input("dogs bark").run()
    assert not at.exception and not at.error
    text = _texts(at)
    assert "Base model" in text and "Tuned model" not in text


def test_query_side_tuning_searches_the_base_index_with_the_tuned_query_route(fresh_run, app_test):
    run = fresh_run("query-only")
    assert not (run / "indexes" / "tuned").exists()
    at = app_test(run).run()
    at.number_input(key="k").set_value(24)
    at.text_input(key="query").input("dogs bark").run()
    assert not at.exception and not at.error
    base, tuned = _columns(at)
    assert sorted(base) == sorted(tuned)  # one index, the whole corpus on both sides
    scores = [c.value.split()[1] for c in at.caption if c.value.startswith("score ")]
    assert scores[:24] != scores[24:]  # ... but the tuned query route scores it differently


def test_metrics_view_shows_curves_table_and_per_query_rows(run_dir, app_test):
    at = app_test(run_dir).run()
    at.switch_page("views/metrics.py").run()
    assert not at.exception and not at.error
    assert {"Recall@k", "Metrics", "Per query"} <= {s.value for s in at.subheader}
    table = at.dataframe[0].value
    assert "ndcg@10" in table.index and {"base", "tuned", "tuned − base", "p"} <= set(table.columns)
    assert all(p == "–" or p == "<0.0001" or float(p) >= 0.0001 for p in table["p"])  # never "0.0000"
    assert table.loc["ndcg@10", "tuned − base"] == pytest.approx(table.loc["ndcg@10", "tuned"] - table.loc["ndcg@10", "base"])
    per_query = at.dataframe[1].value
    assert len(per_query) == 8 and {"delta", "first relevant"} <= set(per_query.columns)


def test_choosing_a_query_in_metrics_opens_it_in_search(run_dir, app_test):
    at = app_test(run_dir).run()
    at.switch_page("views/metrics.py").run()
    at.selectbox(key="open_qid").select("q-sun").run()
    at.button(key="open_button").click().run()
    assert not at.exception
    assert at.text_input(key="query").value == _test_query(run_dir, "q-sun")
    assert "Test query `q-sun`" in _texts(at)


def test_geometry_view_appears_only_when_the_run_has_geometry(fresh_run, app_test):
    run = fresh_run("base-only")
    at = app_test(run).run()
    with pytest.raises(ValueError, match="Known pages"):  # not a page of this run
        at.switch_page("views/geometry.py")
    (run / "geometry").mkdir()
    (run / "geometry" / "geometry.json").write_text(json.dumps({"base": {"anisotropy": 0.4}}))
    at = app_test(run).run()
    at.switch_page("views/geometry.py").run()
    assert not at.exception and "Embedding geometry" in _texts(at)
    table = at.dataframe[0].value
    assert list(table.index) == ["anisotropy"] and table.loc["anisotropy", "base"] == 0.4


def test_clean_query_strips_and_cuts_at_the_cap():
    assert compute.clean_query("  cats  ") == ("cats", False)
    assert compute.clean_query(None) == ("", False)
    text, cut = compute.clean_query("a" * 1500)
    assert cut and len(text) == compute.MAX_QUERY_CHARS


def test_a_test_query_is_recognised_despite_extra_whitespace():
    lookup = compute.query_lookup({"q1": "What  is\na cat?"})
    assert compute.match_query(" What is a  cat? ", lookup) == "q1"
    assert compute.match_query("what is a cat?", lookup) is None  # case is part of the text


def test_metrics_rows_pair_each_metric_with_the_tuned_minus_base_delta_and_p_value():
    metrics = {"base": {"ndcg@10": 0.5, "recall@100": 0.9}, "tuned": {"ndcg@10": 0.6, "recall@100": 0.9}, "bm25": {"ndcg@10": 0.55, "recall@100": 0.8}}
    comparison = {"tuned": {"comparisons": {"base": {"ndcg@10": 0.01, "recall@100": None}}}}
    rows = {r["metric"]: r for r in compute.metrics_rows(metrics, comparison)}
    assert rows["ndcg@10"]["tuned − base"] == pytest.approx(0.1) and rows["ndcg@10"]["p"] == 0.01
    assert rows["recall@100"]["p"] is None and rows["recall@100"]["bm25"] == 0.8
    assert "p" not in compute.metrics_rows({"base": metrics["base"]}, None)[0]  # base-only run


def test_p_values_read_as_people_read_them_and_every_system_has_its_own_colour():
    assert [compute.format_p(p) for p in (0.0312, 0.004, 2e-7, None, float("nan"))] == ["0.031", "0.0040", "<0.0001", "–", "–"]
    colors = compute.system_colors(["base", "tuned", "bm25", "hybrid", "other", "another"])
    assert len(set(colors)) == len(colors)
    assert compute.system_colors(["tuned+bm25", "hybrid"])[0] != compute.system_colors(["tuned+bm25", "hybrid"])[1]


def test_per_query_rows_show_delta_and_first_relevant_rank_before_and_after():
    per_query = {"metric": "ndcg@10", "systems": {"base": {"q1": 0.2, "q2": 1.0}, "tuned": {"q1": 0.7, "q2": 0.5}},
                 "first_relevant_rank": {"base": {"q1": 7, "q2": 1}, "tuned": {"q1": 1, "q2": None}}}
    rows = {r["qid"]: r for r in compute.per_query_rows(per_query, {"q1": "first", "q2": "second"})}
    assert rows["q1"]["delta"] == pytest.approx(0.5) and rows["q1"]["first relevant"] == "7 → 1"
    assert rows["q2"]["first relevant"] == "1 → –" and rows["q2"]["query"] == "second"


def test_geometry_rows_put_models_in_columns_and_leave_settings_out():
    geometry = {"base": {"anisotropy": 0.4, "probe": {"acc": 0.9}, "config": {"seed": 0}, "curve": [1, 2]},
                "tuned": {"anisotropy": 0.2, "probe": {"acc": 0.95}}}
    rows = compute.geometry_rows(geometry)
    assert rows == [{"measure": "anisotropy", "base": 0.4, "tuned": 0.2}, {"measure": "probe.acc", "base": 0.9, "tuned": 0.95}]


def test_the_run_directory_comes_from_argv_else_the_environment(monkeypatch):
    from app.loaders import ENV, run_dir_arg

    monkeypatch.setenv(ENV, "/from/env")
    assert run_dir_arg(["/from/argv"]) == "/from/argv"
    assert run_dir_arg([]) == "/from/env"
    monkeypatch.delenv(ENV)
    assert run_dir_arg([]) is None


def test_retrieval_app_serves_the_installed_entry_script_headless_on_the_given_port(tmp_path):
    from cli import app_cmd

    cmd = app_cmd.command(tmp_path, port=9123)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == Path(__file__).resolve().parents[2] / "app" / "main.py"
    assert cmd[cmd.index("--server.port") + 1] == "9123" and cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[-2:] == ["--", str(tmp_path.resolve())]


def test_retrieval_app_on_a_missing_directory_says_how_to_create_it(tmp_path, capsys):
    from cli import main

    assert main(["app", str(tmp_path / "nope")]) == 2
    assert f"retrieval tune --data DATA --out {tmp_path / 'nope'}" in capsys.readouterr().err


def test_the_first_page_says_which_system_to_deploy_and_warns(fresh_run, app_test):
    run = fresh_run("tuned-index")
    info = json.loads((run / "run.json").read_text())
    info["recommendation"] = {"system": "base", "deploy": "the base model, unchanged", "reason": "best nDCG@10 on dev",
                              "warnings": ["The tuned model is worse than the base model on dev queries of unseen documents"]}
    (run / "run.json").write_text(json.dumps(info))
    at = app_test(run).run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["**Deploy: the base model, unchanged** · chosen on dev evidence: best nDCG@10 on dev"]
    assert any("worse than the base model" in w.value for w in at.warning)
    at = app_test(fresh_run("query-only")).run()
    assert not at.exception and not at.success  # a run without a recommendation shows none


def test_the_app_finds_the_data_through_the_absolute_path_from_any_folder(fresh_run, tmp_path, monkeypatch):
    from app.loaders import LoadedRun, _attach_dataset
    from retrieval.rundir import RunDir

    run = fresh_run("tuned-index")
    info = json.loads((run / "run.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative spec a user typed no longer resolves from here
    monkeypatch.delenv("RETRIEVAL_DATA", raising=False)
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    lost = LoadedRun(run=RunDir(run), info=info, sides={})
    _attach_dataset(lost, "toy-moved-away", "test")
    assert lost.corpus_warning and not lost.corpus
    found = LoadedRun(run=RunDir(run), info=info, sides={})
    _attach_dataset(found, "toy-moved-away", "test", data_path=str(Path(info["data"]).resolve()))
    assert not found.corpus_warning and found.corpus and found.qrels


def test_both_columns_rank_exactly_as_the_keyword_encoder_computed_by_hand(tmp_path, keyword_model_dir, app_test):
    """With the one-hot keyword encoder (and a tuned copy with nudged word vectors) every shown score is known."""
    from sentence_transformers import SentenceTransformer

    from retrieval.encode import doc_text
    from retrieval.sources import resolve
    from tests.app.conftest import build_run
    from tests.conftest import keyword_cosine

    run = build_run(tmp_path, keyword_model_dir, "tuned-index")
    corpus = resolve(json.loads((run / "run.json").read_text())["data"], download=False).corpus
    tuned_weights = SentenceTransformer(str(run / "model"), device="cpu")[0].embedding.weight.detach().numpy()
    at = app_test(run).run()
    at.number_input(key="k").set_value(24)
    query = "cats purr in the warm sun"
    at.text_input(key="query").input(query).run()
    assert not at.exception and not at.error
    shown = [c.value for c in at.caption if c.value.startswith("score ")]
    assert len(shown) == 48
    for column, weights in ((shown[:24], None), (shown[24:], tuned_weights)):
        scores = [(c.split("`")[1], float(c.split()[1])) for c in column]
        expected = {d: keyword_cosine(query, doc_text(doc), weights) for d, doc in corpus.items()}
        assert {d for d, _ in scores} == set(corpus)  # k = the whole corpus
        for doc, score in scores:
            assert score == pytest.approx(expected[doc], abs=1e-4), doc
        assert [s for _, s in scores] == sorted((s for _, s in scores), reverse=True)
    expected_base = {d: keyword_cosine(query, doc_text(doc)) for d, doc in corpus.items()}
    top = {d for d, v in expected_base.items() if v == pytest.approx(max(expected_base.values()))}
    assert top == {"cat0", "cat1", "cat2"} and shown[0].split("`")[1] in top  # "cats", "purr", "warm" beat "the", "sun"
