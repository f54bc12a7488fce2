"""A job's stages, timed and logged: ``[2/5] evaluate ... done in 41.3s``.

Shared by the main job (:mod:`jobs.tune`) and the fine-tuning run inside it
(:func:`finetune.train.finetune`), so both report stage times the same way and both
land in ``run.json``'s ``seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Stages:
    """Runs named stages in order; ``seconds`` maps each stage's name to its wall time.

    ``total`` (when known) numbers the log lines ``[i/total]``; without it they read ``stage: name``.
    """

    def __init__(self, total: int | None = None, log: logging.Logger = logger) -> None:
        self.total, self.done, self.log = total, 0, log
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.done += 1
        tag = f"[{self.done}/{self.total}]" if self.total else "stage:"
        self.log.info("%s %s", tag, name)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 2)
        self.log.info("%s %s done in %.1fs", tag, name, self.seconds[name])
        return result
