"""Loss statistics in the trainer's logs, next to the loss it already reports.

A sentence-transformers loss may return a dict of components, but the trainer
*sums* them into the objective, so statistics that are not losses (in-batch
accuracy, the mutual-information lower bound, the temperature) cannot travel
that way. Our losses keep them in ``loss.last_stats``; this mixin averages them
over each logging interval and adds them to the logs (TensorBoard included).

The logs' ``epoch`` is also ours to fix: the training rows hold every epoch in one pass
(:func:`finetune.pairs.epoch_rows`, each epoch with its own negatives), so the trainer, which
runs that pass as its one epoch, would log 0.33 at the end of the first of three.
"""

from __future__ import annotations

from collections import defaultdict

from transformers import TrainerCallback


class StatsTrainer:
    """Mixin for a sentence-transformers trainer class (put it first in the bases)."""

    _stat_sums: dict[str, float]
    _stat_count: int

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        stats = getattr(self.loss, "last_stats", None)
        if stats and model.training:
            if not hasattr(self, "_stat_sums"):
                self._stat_sums, self._stat_count = defaultdict(float), 0
            for key, value in stats.items():
                if key != "loss":
                    self._stat_sums[key] += float(value)
            self._stat_count += 1
        return result

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and getattr(self, "_stat_count", 0):
            for key, total in self._stat_sums.items():
                logs[key] = round(total / self._stat_count, 4)
            self._stat_sums, self._stat_count = defaultdict(float), 0
        super().log(logs, *args, **kwargs)


class EpochsInState(TrainerCallback):
    """Count epochs as the user asked for them (``--epochs``), not as passes over the rows.

    After each optimizer step the trainer sets ``state.epoch`` to the fraction of its single pass
    done; this scales it by ``epochs`` before anything reads it, so the console, TensorBoard, the
    log history (``train_log``), the evaluator's history and the checkpoints' ``trainer_state.json``
    all say epoch 1.0 at the end of the first epoch. Resuming counts from ``global_step``, not from
    this value.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_step_end(self, args, state, control, **kwargs):
        if state.epoch is not None:
            state.epoch = state.epoch * self.epochs
