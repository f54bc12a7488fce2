"""Run under ``torchrun --nproc_per_node 2``: train the tiny model with InfoNCE (or SigLIP, NCE) on gloo/CPU.

Usage: ddp_train.py MODEL_DIR OUT_DIR {plain,cached,siglip-fit,nce-fit}

Launched by tests/finetune/test_distributed.py. Each rank writes ``rank<N>.json`` into OUT:
the per-step loss statistics, the loss on a fixed batch before and after training, and a
digest of its final weights.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer  # noqa: E402
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from finetune.distributed import tensor_digest, world  # noqa: E402
from finetune.losses.cached_info_nce import CachedInfoNCE  # noqa: E402
from finetune.losses.info_nce import InfoNCE  # noqa: E402
from finetune.losses.nce import NCE  # noqa: E402
from finetune.losses.siglip import SigLIP  # noqa: E402

TOPICS = ["cats purr and sleep", "dogs bark and fetch", "the sun is a star", "the moon orbits the earth",
          "rain falls from clouds", "trees grow leaves", "fish swim in rivers", "birds fly south"]
PER_DEVICE_BATCH = 4
STEPS = 6


def pairs() -> Dataset:
    queries = [f"what about {t.split()[1]}" if t.startswith("the") else t.split(" and ")[0] for t in TOPICS]
    return Dataset.from_dict({
        "query": queries, "positive": TOPICS, "label": [[i, 100 + i] for i in range(len(TOPICS))],
    })


class StepStats(TrainerCallback):
    def __init__(self, loss: InfoNCE | CachedInfoNCE | SigLIP) -> None:
        self.loss, self.steps = loss, []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(dict(self.loss.last_stats))


def fixed_batch_loss(model: SentenceTransformer, data: Dataset) -> float:
    """Loss on all pairs at once, in eval mode and without gathering: comparable before and after."""
    probe = InfoNCE(model, gather_across_processes=False)
    model.eval()
    with torch.no_grad():
        features = [model.preprocess(data["query"]), model.preprocess(data["positive"])]
        value = float(probe(features, torch.tensor(data["label"])))
    model.train()
    return value


def make_loss(kind: str, model: SentenceTransformer) -> InfoNCE | CachedInfoNCE | SigLIP:
    """``plain``: InfoNCE with a learnable temperature; ``cached``: CachedInfoNCE in mini-batches of 2;
    ``siglip-fit``: SigLIP with its bias fitted on each rank's own first batch (then averaged); ``nce-fit``: NCE with
    its offset fitted the same way."""
    positives = {i: {100 + i} for i in range(len(TOPICS))}
    if kind == "nce-fit":
        return NCE(model, positives=positives, fit_bias=True)
    if kind == "siglip-fit":
        return SigLIP(model, init_scale=20.0, init_bias=None, positives=positives)
    if kind == "cached":
        return CachedInfoNCE(model, positives=positives, mini_batch_size=2)
    return InfoNCE(model, positives=positives, learnable_temperature=True)


def main(model_path: str, out: str, kind: str) -> None:
    torch.manual_seed(0)
    model = SentenceTransformer(model_path, device="cpu")
    data = pairs()
    loss = make_loss(kind, model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(out) / "trainer"), use_cpu=True, ddp_backend="gloo", report_to=[],
        per_device_train_batch_size=PER_DEVICE_BATCH, max_steps=STEPS, learning_rate=1e-3, warmup_steps=0,
        save_strategy="no", logging_steps=1000, disable_tqdm=True, dataloader_drop_last=True, seed=0,
    )
    stats = StepStats(loss)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss, callbacks=[stats])
    before = fixed_batch_loss(model, data)
    trainer.train()
    rank, world_size = world()
    result = {
        "rank": rank, "world_size": world_size, "steps": stats.steps, "before": before,
        "after": fixed_batch_loss(model, data), "digest": tensor_digest(model),
        "temperature": None if isinstance(loss, SigLIP) else loss.temperature,
        "bias": loss.bias if isinstance(loss, SigLIP) else float(loss.logit_bias) if isinstance(loss, NCE) else None,
        "fitted_init_bias": getattr(loss, "fitted_init_bias", None),
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
