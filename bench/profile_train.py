"""Where a training step's time goes: the default recipe's trainer, a few steps, phase by phase.

Issue 17 asks for the waste in training to be found with a profiler before anything is
"optimised". This builds exactly what :func:`finetune.train.finetune` trains (same setup,
loss, trainer and precision, built by :func:`finetune.train.prepare`; the base index is reused
from ``--index`` or built), runs
``--steps`` optimizer steps after one warm-up step, and prints:

* seconds per step split into collation (tokenisation + padding), the loss's forward
  (encoding every column), backward, the optimizer step and the rest (the trainer's own
  bookkeeping), measured by wrapping each call;
* padding: the share of token positions in each batch that are padding, queries and
  documents separately (what length-grouped batching could save);
* ``torch.profiler``'s top operators by self CPU time over the measured steps;
* with ``--compile``, the encoder's forward compiled by ``torch.compile`` (inductor, dynamic
  shapes); the warm-up step's time, printed, then holds the compilation.

    python bench/profile_train.py --data ../shared/data/beir/scifact --index /tmp/e2e/scifact/indexes/base

Nothing is written outside ``--work``; no checkpoint is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Timer:
    """Accumulates wall time per phase of the measured steps (the warm-up step is dropped)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.on = False

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.on:
                    self.seconds[phase] += time.perf_counter() - start
        return timed


def padding_share(batch: dict) -> dict[str, float]:
    """Share of padded positions per column of a collated batch (``*_attention_mask`` keys)."""
    shares = {}
    for key, mask in batch.items():
        if key.endswith("attention_mask"):
            shares[key.removesuffix("_attention_mask") or "text"] = 1.0 - float(mask.float().mean())
    return shares


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    from transformers import TrainerCallback

    from finetune.config import FinetuneConfig
    from finetune.train import prepare
    from finetune.trainer import build_trainer
    from retrieval.sources import resolve

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset (any --data form of the CLI)")
    p.add_argument("--index", type=Path, default=None, help="a base index of the dataset to reuse (else built in --work)")
    p.add_argument("--work", type=Path, default=Path("/tmp/profile-train"))
    p.add_argument("--steps", type=int, default=3, help="measured optimizer steps (after one warm-up step)")
    p.add_argument("--mode", default="full", choices=("full", "query"))
    p.add_argument("--top", type=int, default=12, help="operators listed from torch.profiler")
    p.add_argument("--attention-dropout", type=float, default=0.0,
                   help="the encoder's attention-probability dropout while training (default 0, the training default: "
                        "PyTorch's scaled_dot_product_attention runs its fused kernel; 0.1 trains as MiniLM ships, "
                        "materialising and dropping out every attention matrix)")
    p.add_argument("--hidden-dropout", type=float, default=-1.0,
                   help="the encoder's hidden-state dropout while training (default -1: the model's own, MiniLM's 0.1, "
                        "as training keeps it; 0 drops the Bernoulli mask over every hidden state)")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="training precision (default auto: bf16 where the CPU has AVX512-BF16 or AMX, as training "
                        "picks); run bf16 and fp32 one after the other to see whether auto's pick is the faster here")
    p.add_argument("--compile", action="store_true",
                   help="compile the encoder's forward with torch.compile (inductor, dynamic shapes) before training; "
                        "the warm-up step holds the compilation (its seconds are printed)")
    args = p.parse_args(argv)

    config = FinetuneConfig(mode=args.mode, test_split="", interpolate="none", attention_dropout=args.attention_dropout,
                            hidden_dropout=args.hidden_dropout, precision=args.precision)
    dataset = resolve(args.data)
    out = args.work / "run"
    shutil.rmtree(out, ignore_errors=True)
    setup, _, _ = prepare(dataset, config, out, base_index=args.index or args.work / "base-index")
    trainer = build_trainer(setup, config, out)
    if args.compile:
        compile_encoder(setup.model)
    trainer.args.max_steps = args.steps + 1
    trainer.args.eval_strategy = trainer.args.save_strategy = "no"
    trainer.args.load_best_model_at_end = False
    trainer.args.report_to = []

    timer = Timer()
    pads: list[dict[str, float]] = []
    collator = trainer.data_collator  # the trainer reads its attributes: subclass it, do not replace it
    plain_call = type(collator).__call__
    timed_call = timer.wrap("collate", plain_call)

    def counting_call(self, features):
        batch = timed_call(self, features)
        if timer.on:
            pads.append(padding_share(batch))
        return batch

    collator.__class__ = type("Counting" + type(collator).__name__, (type(collator),), {"__call__": counting_call})
    setup.loss.forward = timer.wrap("forward (loss, every column encoded)", setup.loss.forward)
    trainer.accelerator.backward = timer.wrap("backward", trainer.accelerator.backward)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    steps = {"start": 0.0, "total": 0.0, "warm-up": 0.0}

    class Phases(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == 1:  # after the warm-up step
                timer.on = True
                profiler.start()
            steps["start"] = time.perf_counter()

        def on_pre_optimizer_step(self, a, state, control, **kw):
            steps["opt"] = time.perf_counter()

        def on_optimizer_step(self, a, state, control, **kw):
            if timer.on:
                timer.seconds["optimizer step"] += time.perf_counter() - steps["opt"]

        def on_step_end(self, a, state, control, **kw):
            if timer.on:
                steps["total"] += time.perf_counter() - steps["start"]
            else:
                steps["warm-up"] = time.perf_counter() - steps["start"]

    trainer.add_callback(Phases())
    torch.manual_seed(config.seed)
    trainer.train()
    profiler.stop()
    timer.on = False

    n = args.steps
    # collation runs in the dataloader before on_step_begin: count it beside the step, not inside it
    step_total = steps["total"] + timer.seconds["collate"]
    print(f"\n## {dataset.name}, mode {args.mode}: {n} steps of batch {config.batch_size}, "
          f"precision {'bf16' if trainer.args.bf16 else 'fp32'}, {torch.get_num_threads()} threads"
          f"{', encoder compiled (torch.compile, dynamic)' if args.compile else ''}; "
          f"warm-up step {steps['warm-up']:.1f} s (not counted)\n")
    print("| phase | s per step | share |\n|---|---|---|")
    known = 0.0
    for phase, seconds in timer.seconds.items():
        known += seconds
        print(f"| {phase} | {seconds / n:.2f} | {seconds / step_total:.0%} |")
    print(f"| rest (trainer bookkeeping, scheduler, logging) | {(step_total - known) / n:.2f} | "
          f"{(step_total - known) / step_total:.0%} |")
    print(f"| **step** | **{step_total / n:.2f}** | |")
    if pads:
        columns = sorted({c for row in pads for c in row})
        print("\npadding share per column: " + ", ".join(
            f"{c} {np.mean([row[c] for row in pads if c in row]):.0%}" for c in columns))
    print()
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    shutil.rmtree(out, ignore_errors=True)
    return 0


def compile_encoder(model) -> None:
    """``torch.compile`` the transformer's forward in place (dynamic shapes: batches are padded to their longest text).

    The forward itself, not the module: sentence-transformers 6 calls ``self.model.forward``
    directly, so a compiled module's ``__call__`` (``nn.Module.compile``) would never run.
    """
    import torch

    encoder = model[0].auto_model
    encoder.forward = torch.compile(encoder.forward, dynamic=True)


if __name__ == "__main__":
    raise SystemExit(main())
