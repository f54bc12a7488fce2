"""The fine-tuning pipeline end to end on the toy dataset with the tiny model (both modes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finetune.config import FinetuneConfig
from finetune.train import finetune
from retrieval.data import load_beir
from retrieval.models import load_model, model_fingerprint


def _config(tiny_model_path, **kw) -> FinetuneConfig:
    base = dict(base=str(tiny_model_path), epochs=2, batch_size=4, dev_fraction=0.25, learning_rate=1e-3,
                precision="fp32", batch_size_encode=16, interpolate="none", mode="query")
    base.update(kw)
    return FinetuneConfig(**base)


def test_query_mode_trains_the_query_side_and_keeps_the_base_document_side(tiny_model_path, beir_dir, tmp_path):
    ds = load_beir(beir_dir)
    result = finetune(ds, _config(tiny_model_path), tmp_path / "out")
    tuned = load_model(str(result.model_path))
    base = load_model(str(tiny_model_path))
    assert model_fingerprint(tuned, "document") == model_fingerprint(base, "document")
    assert model_fingerprint(tuned, "query") != model_fingerprint(base, "query")
    texts = ["cats purr", "fish swim"]
    np.testing.assert_allclose(tuned.encode_document(texts), base.encode_document(texts), atol=1e-5)
    assert not np.allclose(tuned.encode_query(texts), base.encode_query(texts), atol=1e-4)
    summary = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert summary["dev_history"][0]["epoch"] == 0 and summary["dev_history"][-1]["epoch"] == pytest.approx(2.0)
    # the rows hold both epochs in one pass of the trainer; its logs still count the epochs asked for
    logged = [row["epoch"] for row in summary["train_log"] if "epoch" in row]
    assert max(logged) == pytest.approx(2.0) and min(logged) < 1.0
    state = json.loads(max((tmp_path / "out" / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                           key=lambda p: int(p.parent.name.split("-")[-1])).read_text())
    assert state["epoch"] == pytest.approx(2.0)
    assert set(summary["test"]) == {"base", "tuned"}
    assert any("mi_lower_bound" in row and "accuracy" in row for row in summary["train_log"])
    assert (tmp_path / "out" / "negatives" / "suspects.jsonl").exists()
    assert "base_model:" in (result.model_path / "README.md").read_text()
    assert not (tmp_path / "out" / "indexes" / "tuned").exists()  # nothing re-encoded
    assert_plain_client_gets_the_tuned_query_side(result.model_path, tuned, base)


def card_example(folder) -> str:
    """The python block of the model card's "Use it" section."""
    card = (folder / "README.md").read_text()
    return card.split("## Use it", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def assert_plain_client_gets_the_tuned_query_side(folder, tuned, base) -> None:
    """A client that only knows ``SentenceTransformer(path).encode`` (a vector store, a RAG framework) embeds queries right."""
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(folder))
    texts = ["cats purr", "fish swim"]
    np.testing.assert_allclose(plain.encode(texts), tuned.encode_query(texts), atol=1e-6)
    assert not np.allclose(plain.encode(texts), base.encode(texts), atol=1e-4)
    np.testing.assert_allclose(plain.encode_document(texts), base.encode(texts), atol=1e-5)
    example = card_example(folder)
    assert len(example.strip().splitlines()) == 3 and "model.encode(" in example
    namespace: dict = {}
    exec(example, namespace)  # the card's three lines run as written
    assert namespace["scores"].shape == (1, 1)


def test_rerun_with_same_settings_resumes_and_other_settings_are_refused(tiny_model_path, beir_dir, tmp_path):
    from retrieval.errors import UsageError

    ds = load_beir(beir_dir)
    first = finetune(ds, _config(tiny_model_path), tmp_path / "out")
    weights = sorted((tmp_path / "out" / "checkpoints").glob("checkpoint-*/model.safetensors"))
    stamps = [w.stat().st_mtime_ns for w in weights]
    again = finetune(ds, _config(tiny_model_path), tmp_path / "out")
    assert again.dev_history == first.dev_history  # restored from the checkpoint, not re-run
    assert [w.stat().st_mtime_ns for w in weights] == stamps  # no training step taken, no checkpoint rewritten
    with pytest.raises(UsageError, match="checkpoints of a run with other settings"):
        finetune(ds, _config(tiny_model_path, learning_rate=5e-4), tmp_path / "out")


def test_full_mode_trains_one_encoder_with_mined_negatives_and_reindexes(tiny_model_path, beir_dir, tmp_path):
    ds = load_beir(beir_dir)
    config = _config(tiny_model_path, mode="full", rank_start=1, rank_end=10, margin=2.0, num_negatives=1,
                     precision="bf16")
    result = finetune(ds, config, tmp_path / "out")
    tuned = load_model(str(result.model_path))
    assert model_fingerprint(tuned, "document") != model_fingerprint(load_model(str(tiny_model_path)), "document")
    metas = {side: json.loads((tmp_path / "out" / "indexes" / side / "meta.json").read_text()) for side in ("base", "tuned")}
    # the test split compares the two indexes like for like: the tuned one is encoded as the base one was
    assert metas["base"]["backend"] == metas["tuned"]["backend"] == "torch-bf16"
    assert result.mining["negatives"] > 0 and set(result.test_metrics) == {"base", "tuned"}


def test_starved_queries_are_left_out_with_starved_drop(tiny_model_path, beir_dir, tmp_path):
    """A mining window past the end of the toy corpus starves every query: 'drop' leaves nothing to train on."""
    from retrieval.errors import UsageError

    ds = load_beir(beir_dir)
    config = _config(tiny_model_path, mode="full", rank_start=40, rank_end=50, num_negatives=1, epochs=1, starved="drop")
    with pytest.raises(UsageError, match="--starved drop left no training query"):
        finetune(ds, config, tmp_path / "drop")


def test_the_base_models_step_0_evaluation_is_never_reported_as_the_selected_checkpoint():
    from pathlib import Path

    from finetune.train import FinetuneResult

    history = [{"epoch": 0.0, "step": 0, "ndcg@10": 0.70}, {"epoch": 1.0, "step": 5, "ndcg@10": 0.60},
               {"epoch": 2.0, "step": 10, "ndcg@10": 0.65}]
    result = FinetuneResult(model_path=Path("m"), dev_split="", dev_history=history, train_log=[], test_metrics=None,
                            mining={})
    assert result.best_dev["step"] == 10 and result.beats_base is False  # the base (step 0) stays best on dev
    history[2]["ndcg@10"] = 0.75
    assert result.best_dev["step"] == 10 and result.beats_base is True
