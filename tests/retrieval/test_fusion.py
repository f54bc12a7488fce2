"""Run fusion and the tie-breaking that makes every evaluator rank a run alike."""

from __future__ import annotations

import numpy as np


def test_ties_are_broken_by_the_dense_score_then_the_document_id_and_survive_a_trec_file(tmp_path):
    from ranx import Qrels, Run, evaluate

    from retrieval.fusion import break_ties

    fused = Run.from_dict({"q": {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.25, "e": 0.5 - 1e-17}})
    dense = Run.from_dict({"q": {"a": 0.1, "b": 0.9, "c": 0.1, "d": 0.99}})
    fixed = break_ties(fused, by=dense).to_dict()["q"]
    order = sorted(fixed, key=fixed.get, reverse=True)
    assert order == ["b", "a", "c", "e", "d"]  # dense score first, then document id ("a" < "c"); "e" is a tie in float
    assert len(set(fixed.values())) == 5 and fixed["b"] == 0.5 and fixed["d"] == 0.25  # untied scores kept exactly
    assert len({np.float32(v) for v in fixed.values()}) == 5  # distinct in single precision too (pytrec_eval reads so)
    path = tmp_path / "run.trec"
    Run.from_dict({"q": fixed}).save(str(path), kind="trec")
    lines = [line.split() for line in path.read_text().splitlines()]
    assert [doc for _, _, doc, *_ in lines] == order  # the file's own ranks are the tie-broken order
    reread = Run.from_file(str(path), kind="trec")
    qrels = Qrels.from_dict({"q": {"c": 1}})
    assert evaluate(qrels, reread, "ndcg@10") == evaluate(qrels, Run.from_dict({"q": fixed}), "ndcg@10")
    # in reverse id order, as trec_eval breaks ties, "c" would come before "a": after break_ties no tie remains to break
    assert fixed["a"] > fixed["c"]
