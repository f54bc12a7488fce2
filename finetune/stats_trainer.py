"""Loss statistics in the trainer's logs, next to the loss it already reports.

A sentence-transformers loss may return a dict of components, but the trainer
*sums* them into the objective, so statistics that are not losses (in-batch
accuracy, the mutual-information lower bound, the temperature) cannot travel
that way. Our losses keep them in ``loss.last_stats``; this mixin averages them
over each logging interval and adds them to the logs (TensorBoard included).
"""

from __future__ import annotations

from collections import defaultdict


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
