"""Fine-tune a bi-encoder with sentence-transformers' trainer: the whole pipeline of one run.

Stages: base index (reused if it exists: never re-encode a corpus whose index
matches) -> train/dev split -> hard-negative mining over that index -> training
with dev nDCG@10 at every evaluation, the best checkpoint kept -> export
(``OUT/model``) -> test evaluation. The training loop is the trainer's; this
module runs the stages and wires data, loss and evaluator together;
:mod:`finetune.trainer` sets the trainer's arguments and callbacks, and
:mod:`finetune.stats_trainer` adds the loss statistics (in-batch accuracy, MI
lower bound) to its logs.

Layout under ``out``::

    model/                    the tuned model (SentenceTransformer(path) loads it), with its model card
    negatives/                mined negatives, suspects (likely false negatives) and counts
    checkpoints/              trainer checkpoints (resume), settings.json guards against mixing settings
    logs/                     TensorBoard
    finetune.json             settings, dev history, test metrics, wall time per stage
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetune.config import FinetuneConfig, precision_flags
from finetune.dev_split import dev_split
from finetune.pairs import TrainQueries, epoch_rows, train_queries
from finetune.trainer import build_trainer, dev_history, train_or_resume
from index.atomic import write_text
from retrieval.data import Dataset
from retrieval.errors import UsageError
from retrieval.stages import Stages

logger = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    model_path: Path
    dev_split: str
    dev_history: list[dict[str, float]]
    train_log: list[dict[str, Any]]
    test_metrics: dict[str, dict[str, float]] | None
    mining: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    pairs_per_second: float = 0.0
    dev: dict[str, Any] = field(default_factory=dict)  # DevSplit.summary(): how, dev-unseen and dev-seen ids
    select: str = "ndcg@10"  # the dev_history key that chose the checkpoint
    interpolation: dict[str, Any] | None = None  # {"alpha": a, "scores": {a: dev score}} when WiSE-FT ran

    @property
    def best_dev(self) -> dict[str, float] | None:
        """The dev evaluation that selected the checkpoint (best on the selection metric).

        The step-0 evaluation scores the base model, which is no checkpoint: it counts only when
        there is no other (a run that never beat it is flagged by :attr:`beats_base`).
        """
        rows = [h for h in self.dev_history if self.select in h] or self.dev_history
        rows = [h for h in rows if h.get("step", 0) > 0] or rows
        key = self.select if rows and self.select in rows[0] else "ndcg@10"
        return max(rows, key=lambda h: h[key]) if rows else None


    @property
    def beats_base(self) -> bool | None:
        """Whether the selected checkpoint scored above the base model's step-0 dev evaluation (None: no step 0)."""
        start = next((h for h in self.dev_history if h.get("step", 0) == 0), None)
        best = self.best_dev
        if start is None or best is None or best is start:
            return None
        key = self.select if self.select in best and self.select in start else "ndcg@10"
        return best[key] > start[key]


def finetune(dataset: Dataset, config: FinetuneConfig, out: str | Path, base_index: str | Path | None = None,
             base_model=None) -> FinetuneResult:
    """Run every stage; rerunning with the same settings resumes from the last checkpoint.

    ``base_model``: ``config.base`` already loaded (the main job passes its own, so the base
    model is read from disk once per job); it is never trained, the trainer gets a copy.
    """
    config.validate()
    out = Path(out)
    stages = Stages(log=logger)
    setup, split, counts = prepare(dataset, config, out, base_index, base_model, stages)
    base = setup.base
    trainer = build_trainer(setup, config, out)
    start = time.perf_counter()
    stages.run("train", train_or_resume, trainer, out, config)
    train_seconds = time.perf_counter() - start
    if config.lora_rank:
        stages.run("merge LoRA", setup.merge_lora)
    interpolation = stages.run("interpolate", _interpolate, setup, base, config) if config.interpolate != "none" else None
    model = stages.run("export", setup.export, out / "model")

    test_metrics = None
    if config.test_split and config.test_split in dataset.qrels:
        test_metrics = stages.run("test evaluation", setup.evaluate_test, model, dataset, config.test_split, out)
    history = dev_history(out, trainer.state.log_history, setup.evaluator)
    trained_rows = trainer.state.global_step * config.batch_size * int(os.environ.get("WORLD_SIZE", "1"))
    result = FinetuneResult(
        model_path=out / "model", dev_split=split.how, dev_history=history, train_log=trainer.state.log_history,
        test_metrics=test_metrics, mining=counts, seconds=stages.seconds,
        pairs_per_second=round(min(trained_rows, len(setup.rows)) / max(train_seconds, 1e-9), 2),
        dev=split.summary(), select=setup.evaluator.select_key, interpolation=interpolation,
    )
    if result.beats_base is False and (interpolation is None or interpolation.get("alpha", 1) > 0):
        logger.warning("no checkpoint beat the base model on dev (%s); the exported model is worse than base there: "
                       "keep the base model, or rerun with --interpolate auto to fall back to its weights",
                       result.select)
    from finetune.export import write_model_card

    write_model_card(out / "model", config, dataset, result)
    write_text(out / "finetune.json", json.dumps(_summary(config, result), indent=2, default=str) + "\n")
    return result


def prepare(dataset: Dataset, config: FinetuneConfig, out: Path, base_index: str | Path | None = None,
            base_model=None, stages: Stages | None = None):
    """Everything before training: base index, dev split, mining (written under ``out/negatives``), the mode's setup.

    Returns ``(setup, split, counts)``; :func:`finetune` trains ``setup``, ``bench/profile_train.py``
    profiles exactly the same one.
    """
    from finetune.negatives import MiningConfig, mine_hard_negatives, save_mined
    from retrieval.encode import encode
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load

    stages = stages or Stages(log=logger)
    out = Path(out)
    base = base_model if base_model is not None else stages.run("load base model", load_model, config.base)
    from retrieval.backends import auto_backend

    spec = IndexSpec(batch_size=config.batch_size_encode, backend=auto_backend(precision=config.precision)[0])
    stored = stages.run("base index", build_or_load, base, config.base, dataset.corpus,
                        Path(base_index) if base_index else out / "indexes" / "base", spec, source=dataset.source)
    documents = stored.vectors()
    if documents is None:
        raise UsageError(f"{stored.path}: the base index was saved without embeddings.npy; rebuild it with embeddings")
    split = dev_split(dataset, config.train_split, config.dev_split, config.dev_fraction, config.seed)
    queries = train_queries(dataset, split.train)
    logger.info("training on %d queries; dev: %s", len(queries), split.how)

    query_vectors = stages.run("encode train queries", encode, base, queries.texts, None, config.batch_size_encode, False, "query")
    mining = MiningConfig(rank_start=1 if config.mode == "query" else config.rank_start, rank_end=config.rank_end,
                          margin=config.margin, num_negatives=0 if config.mode == "query" else config.num_negatives,
                          seed=config.seed)
    mined = stages.run("mine negatives", mine_hard_negatives, stored, query_vectors, queries.qids, queries.qrels(),
                       mining, dataset.queries, dataset.corpus)
    save_mined(mined, out / "negatives")
    counts = {"queries": len(queries), "negatives": sum(len(v) for v in mined.negatives.values()),
              "suspects": len(mined.suspects), "starved": len(mined.starved)}

    from finetune.modes import SETUPS

    setup = SETUPS[config.mode](dataset, config, queries, mined, stored, np.asarray(documents), split, base)
    return setup, split, counts


def _interpolate(setup, base, config: FinetuneConfig) -> dict[str, Any]:
    """WiSE-FT: replace the trained weights in place by the base/tuned mix chosen on dev (or fixed)."""
    from finetune.interpolate import choose_alpha, mixed_state

    if config.interpolate == "auto":
        key, history = setup.evaluator.select_key, setup.evaluator.history
        known = {}
        if len(history) > 1 and history[0].get("step") == 0 and key in history[0]:  # measured in this process
            known = {0.0: history[0][key], 1.0: max(h[key] for h in history[1:])}
        alpha, scores = choose_alpha(base, setup.model, setup.evaluator.selected, known=known)
    else:
        alpha, scores = float(config.interpolate), {}
    setup.model.load_state_dict(mixed_state(base, setup.model, alpha))
    from retrieval.models import forget_fingerprints

    forget_fingerprints(setup.model)
    logger.info("interpolation: a=%.2f (%s)", alpha, "chosen on dev" if scores else "fixed")
    return {"alpha": alpha, "metric": setup.evaluator.select_key, "scores": {str(a): v for a, v in scores.items()}}


def _summary(config: FinetuneConfig, result: FinetuneResult) -> dict[str, Any]:
    return {"settings": dataclasses.asdict(config), "dev_split": result.dev_split, "best_dev": result.best_dev,
            "beats_base_on_dev": result.beats_base,
            "dev": result.dev, "select": result.select, "interpolation": result.interpolation,
            "dev_history": result.dev_history, "test": result.test_metrics, "mining": result.mining,
            "seconds": result.seconds, "pairs_per_second": result.pairs_per_second,
            "train_log": result.train_log}


__all__ = ["FinetuneConfig", "FinetuneResult", "TrainQueries", "epoch_rows", "finetune", "precision_flags"]
