"""The trainer a recipe trains with: sentence-transformers' ``SentenceTransformerTrainer``, configured.

:func:`build_trainer` turns a :class:`~finetune.config.FinetuneConfig` into the trainer's arguments
(epochs already laid out as rows, evaluation and checkpoints ``--evals-per-epoch`` times an epoch,
the best dev checkpoint kept, precision, learning rates of learnt temperatures and offsets) and its
callbacks; :func:`train_or_resume` trains, resuming from the last checkpoint of an earlier run with
the same settings and refusing one with other settings; :func:`dev_history` reads the dev curve
back from the trainer's log. :func:`finetune.train.finetune` runs them; ``bench/profile_train.py``
profiles the same trainer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig, precision_flags
from index.atomic import write_text
from retrieval.errors import UsageError

logger = logging.getLogger(__name__)


def build_trainer(setup, config: FinetuneConfig, out: Path):
    """The recipe's ``SentenceTransformerTrainer`` for ``setup`` (a :mod:`finetune.modes` setup), writing under ``out``."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from finetune.stats_trainer import EpochsInState, StatsTrainer

    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, math.ceil(setup.rows_per_epoch / (config.batch_size * world)))
    eval_steps = max(1, steps_per_epoch // max(1, config.evals_per_epoch))
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "logs"))
    import torch

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=1,  # the rows already hold every epoch (finetune.pairs.epoch_rows)
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=float(config.warmup_ratio),  # a float below 1 is a ratio in transformers v5
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="steps", save_steps=eval_steps, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model=f"eval_{setup.evaluator.name}_{setup.evaluator.select_key}",
        greater_is_better=True,
        logging_steps=max(1, eval_steps // 4),
        seed=config.seed, data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        report_to=["tensorboard"],
        batch_sampler=setup.batch_sampler,
        dataloader_drop_last=world > 1,
        disable_tqdm=False,
        # a learnable temperature (or SigLIP's scale and bias, NCE's bias) moves far too slowly at an encoder's
        # learning rate
        learning_rate_mapping=({r"log_temperature": 1e-3} if config.learnable_temperature else
                               {r"logit_scale|logit_bias": 1e-3} if config.loss == "siglip" or
                               (config.loss == "nce" and config.nce_bias == "fit") else None),
        **precision_flags(config.precision),
    )
    mixins = [StatsTrainer]
    if config.lora_rank:  # its checkpoints hold the injected adapter, which sentence-transformers cannot reload
        from finetune.lora import LoraCheckpoints

        mixins.insert(0, LoraCheckpoints)
    trainer_cls = type("Trainer", (*mixins, SentenceTransformerTrainer), {})
    callbacks = [EpochsInState(config.epochs), *setup.callbacks]
    if config.early_stopping:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping))
    if config.momentum > 0:  # the queue's momentum encoder follows the online one after each optimizer step
        from finetune.loss_callbacks import trainer_callbacks

        callbacks += trainer_callbacks(setup.loss)
    return trainer_cls(model=setup.model, args=args, train_dataset=setup.train_dataset, loss=setup.loss,
                       evaluator=setup.evaluator, callbacks=callbacks)


def train_or_resume(trainer, out: Path, config: FinetuneConfig) -> None:
    """Train, resuming from the last checkpoint of an earlier run with the same settings."""
    checkpoints = out / "checkpoints"
    guard = checkpoints / "settings.json"
    fingerprint = config.fingerprint()
    resume = None
    if guard.exists():
        previous = json.loads(guard.read_text()).get("fingerprint")
        if previous != fingerprint:
            raise UsageError(
                f"{checkpoints} holds checkpoints of a run with other settings; use another --out, "
                f"or delete {checkpoints} to start over"
            )
        found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        resume = str(found[-1]) if found else None
        if resume:
            logger.info("resuming from %s", resume)
    else:
        checkpoints.mkdir(parents=True, exist_ok=True)
        write_text(guard, json.dumps({"fingerprint": fingerprint, "settings": dataclasses.asdict(config)}, indent=1))
    if resume is None:  # the starting point of the dev curve, kept for resumed runs
        trainer.evaluator(trainer.model, epoch=0, steps=0)
        write_text(checkpoints / "dev_start.json", json.dumps(trainer.evaluator.history[-1]))
    trainer.train(resume_from_checkpoint=resume)


def dev_history(out: Path, log_history: list[dict[str, Any]], evaluator) -> list[dict[str, float]]:
    """Dev metrics per evaluation, from the trainer's log (restored on resume) plus the step-0 point."""
    start = out / "checkpoints" / "dev_start.json"
    history = [json.loads(start.read_text())] if start.exists() else []
    prefix = f"eval_{evaluator.name}_"
    for row in log_history:
        if prefix + "ndcg@10" in row:
            metrics = {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}
            history.append({"epoch": round(row.get("epoch", 0), 3), "step": row.get("step", 0), **metrics})
    return history
