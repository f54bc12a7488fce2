"""The checks of :meth:`FinetuneConfig.validate`: every range and combination of fine-tuning knobs, each refused with
one line that names the flag (a config file and the Python API bypass argparse, so nothing here relies on it)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from retrieval.errors import UsageError

if TYPE_CHECKING:
    from finetune.config import FinetuneConfig


def check(config: FinetuneConfig) -> None:
    """Raise UsageError on the first setting out of range or a combination the trainer does not support."""
    for f in dataclasses.fields(config):  # --mode, --loss, --precision, ...: a config file bypasses argparse
        choices, value = f.metadata.get("choices"), getattr(config, f.name)
        if choices and value not in choices:
            quoted = [repr(c) for c in choices]
            options = " or ".join(quoted) if len(quoted) == 2 else f"one of {', '.join(quoted)}"
            raise UsageError(f"--{f.name.replace('_', '-')} must be {options}, not {value!r}")
    if config.loss != "infonce":
        if config.mode != "full":
            raise UsageError(f"--loss {config.loss} needs --mode full (mode query trains InfoNCE only)")
        for flag, on in (("--gradient-cache", config.gradient_cache), ("--symmetric", config.symmetric),
                         ("--learnable-temperature", config.learnable_temperature)):
            if on:
                raise UsageError(f"{flag} is an InfoNCE option; it does not combine with --loss {config.loss}")
    if config.loss == "triplet" and config.num_negatives < 1:
        raise UsageError("--loss triplet needs --num-negatives >= 1 (its triplets are the mined negatives)")
    if not 0 <= config.triplet_margin <= 2:
        raise UsageError(f"--triplet-margin must be in [0, 2] (a cosine distance), got {config.triplet_margin}")
    if not 0 < config.temperature <= 10:
        raise UsageError(f"--temperature must be in (0, 10], got {config.temperature}")
    if config.rank_start < 1 or config.rank_end <= config.rank_start:
        raise UsageError(f"mining window [{config.rank_start}, {config.rank_end}) is empty or starts below rank 1")
    if config.epochs < 1 or config.batch_size < 2:
        raise UsageError("--epochs must be >= 1 and --batch-size >= 2")
    if config.interpolate not in ("auto", "none"):
        try:
            alpha = float(config.interpolate)
        except ValueError:
            alpha = -1.0
        if not 0 <= alpha <= 1:
            raise UsageError(f"--interpolate must be 'auto', 'none' or a number in [0, 1], not {config.interpolate!r}")
    if config.corpus_negatives < 0:
        raise UsageError(f"--corpus-negatives must be >= 0 (0: the whole corpus), got {config.corpus_negatives}")
    if config.corpus_negatives and config.mode != "query":
        raise UsageError("--corpus-negatives needs --mode query (the frozen corpus is what it samples from)")
    _check_queue_and_matryoshka(config)
    if not 0 <= config.attention_dropout < 1:
        raise UsageError(f"--attention-dropout must be in [0, 1), got {config.attention_dropout}")
    if not (config.hidden_dropout == -1 or 0 <= config.hidden_dropout < 1):
        raise UsageError(f"--hidden-dropout must be in [0, 1) or -1 (keep the model's), got {config.hidden_dropout}")
    if config.lora_rank < 0 or config.lora_alpha < 0:
        raise UsageError(f"--lora-rank and --lora-alpha must be >= 0, got {config.lora_rank} and {config.lora_alpha}")
    if not 0 < config.dev_fraction < 1:
        raise UsageError(f"--dev-fraction must be between 0 and 1, got {config.dev_fraction}")


def _check_queue_and_matryoshka(config: FinetuneConfig) -> None:
    if config.queue_size < 0:
        raise UsageError(f"--queue-size must be >= 0 (0: no queue), got {config.queue_size}")
    if not 0 <= config.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {config.momentum}")
    if config.momentum > 0 and not config.queue_size:
        raise UsageError("--momentum needs --queue-size > 0 (the momentum encoder embeds the queued documents)")
    if config.queue_size:
        if config.mode != "full" or config.loss != "infonce":
            raise UsageError("--queue-size needs --mode full and --loss infonce")
        if config.gradient_cache:
            raise UsageError("--queue-size does not combine with --gradient-cache")
    dims = config.parsed_matryoshka_dims()
    if dims:
        if config.mode != "full":
            raise UsageError("--matryoshka-dims needs --mode full")
        if config.momentum > 0:
            raise UsageError("--matryoshka-dims with --momentum > 0 is not implemented (use --momentum 0)")
        if config.gradient_cache and config.learnable_temperature:
            raise UsageError("--matryoshka-dims with --gradient-cache and --learnable-temperature is not implemented")
