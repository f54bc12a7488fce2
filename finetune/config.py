"""Every knob of fine-tuning, with its help text: the CLI flags and config-file keys come from here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


LOSSES = ("infonce", "nce", "siglip", "triplet")


@dataclass
class FinetuneConfig:
    base: str = _f("all-MiniLM-L6-v2", "base sentence-transformers model (name or folder)")
    mode: str = _f(
        "full", "what is trained: 'full' tunes one shared encoder on in-batch + mined hard negatives (the corpus "
        "is re-encoded afterwards; measured best on documents never seen in training, README 'Recipes, "
        "measured'), 'query' tunes the query encoder alone against the frozen base document index (every "
        "corpus document a negative, nothing re-encoded; gains mostly on documents that were training positives)",
        choices=("query", "full"),
    )
    train_split: str = _f("train", "qrels split to train on")
    dev_split: str = _f("dev", "qrels split for model selection; when absent, --dev-fraction of train is held out")
    dev_fraction: float = _f(0.1, "share of training queries held out for dev when the dataset has no dev split: whole "
                                  "groups of queries sharing relevant documents (dev-unseen), plus up to half as many "
                                  "whose documents stay training positives (dev-seen)")
    select_on: str = _f("unseen", "dev queries whose nDCG@10 selects the checkpoint and the interpolation weight: "
                                  "'unseen' (relevant documents never training positives; falls back to all when there "
                                  "are none) or 'all'", choices=("unseen", "all"))
    test_split: str = _f("test", "qrels split the tuned model is evaluated on at the end ('' to skip)")
    epochs: int = _f(3, "passes over the training queries (one sampled positive per query per epoch); the checkpoint "
                        "with the best --select-on dev nDCG@10 is kept (--evals-per-epoch per epoch). 3 beat 2 and 2 "
                        "beat 1 overall on both datasets measured, at every seed (README 'Recipes, measured'); each "
                        "epoch costs as much training time as the first; 1 is the fast choice; query mode needs more "
                        "(e.g. 20) and stops early on dev-unseen anyway")
    batch_size: int = _f(32, "queries per batch (per process)")
    learning_rate: float = _f(3e-5, "peak learning rate (AdamW), reached after warmup, then linear decay")
    warmup_ratio: float = _f(0.1, "share of steps spent warming the learning rate up")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    loss: str = _f(
        "infonce", "training objective of mode full: 'infonce' softmax over in-batch + mined negatives; 'nce' one "
        "binary (sigmoid) decision per candidate on cosine / tau + c (--nce-bias); 'siglip' pairwise sigmoid on "
        "t*cosine + b with t, b learnt (Zhai et al. 2023); 'triplet' hinge on cosine distance against each query's "
        "mined negatives (--triplet-margin)", choices=LOSSES, fingerprint_default=True,
    )
    temperature: float = _f(0.05, "InfoNCE (and NCE) temperature tau (logits are cosine / tau); --siglip-init fit "
                                     "starts SigLIP's scale t at 1/tau")
    siglip_init: str = _f("fit", "start of --loss siglip's logit scale t and bias b: 'fit' t = 1/--temperature and b the "
                                 "minimiser of the loss on the first batch, where its pull on positives equals its push "
                                 "on negatives, as in InfoNCE (SciFact 0.7091 nDCG@10 at three epochs); 'paper' t = 10, "
                                 "b = -10 (Zhai et al., made for training from scratch: fine-tuning MiniLM, b moved 0.025 "
                                 "in 65 steps and the model stayed level with base, 0.6366)",
                          choices=("fit", "paper"), fingerprint_default="paper", loss_only="siglip")
    nce_bias: str = _f("fit", "offset c of --loss nce's logits (cosine / tau + c): 'fit' NCE's learnt normalising "
                              "constant, started at the minimiser of the loss on the first batch (three epochs: above "
                              "base, below InfoNCE: SciFact 0.6787 nDCG@10, manual pages 0.7879); 'none' the plain "
                              "logit, under which the sigmoid calls every candidate relevant (one epoch: below base, "
                              "SciFact 0.5815)",
                       choices=("fit", "none"), fingerprint_default="none", loss_only="nce")
    triplet_margin: float = _f(0.1, "margin of --loss triplet, in cosine distance 1 - cos (FaceNet's 0.2 on the "
                                     "squared distance of unit vectors)",
                                 fingerprint_default=True)
    attention_dropout: float = _f(0.0, "attention-probability dropout of the encoder while training (MiniLM and most "
                                       "BERT-style models ship 0.1). At 0 PyTorch's fused attention kernel runs instead of "
                                       "materialising and dropping out every attention matrix: a training step 2-2.6x "
                                       "faster on CPU (bench/profile_train.py) at the same retrieval quality (README "
                                       "'Recipes, measured'); the hidden-state dropouts are kept")
    hidden_dropout: float = _f(-1.0, "dropout of the encoder's hidden states while training (embeddings, attention "
                                     "and feed-forward outputs; MiniLM ships 0.1); -1 keeps the model's own. 0 skips "
                                     "a Bernoulli mask over every hidden state (a CPU training step 1.06x faster, "
                                     "bench/profile_train.py; seed 42: SciFact +0.9 nDCG@10, manual pages -0.2, README "
                                     "'Where a training step's time goes')",
                               fingerprint_default=True)
    lora_rank: int = _f(0, "LoRA (peft): train rank-r adapters on every linear layer of the encoder instead of all its "
                           "weights, merged into a plain model at export (no peft needed to use it); adapters need a "
                           "higher --learning-rate than full tuning (e.g. 3e-4); 0: off", fingerprint_default=True)
    lora_alpha: float = _f(0.0, "LoRA scale alpha (the update is alpha/r x B A); 0: twice --lora-rank",
                           fingerprint_default=True)
    learnable_temperature: bool = _f(False, "learn tau (mode full)")
    symmetric: bool = _f(False, "add the document->query InfoNCE term (mode full)")
    queue_size: int = _f(0, "MoCo-style queue (mode full, --loss infonce, one process, no --gradient-cache): the document "
                            "embeddings of the last batches, up to this many rows, join every query's candidates as extra "
                            "negatives (queued known positives masked); 0: off", fingerprint_default=True)
    momentum: float = _f(0.0, "with --queue-size: momentum m of a copy of the encoder that embeds the queued documents "
                              "(theta_k = m theta_k + (1-m) theta_q after each step, e.g. 0.999); 0: the queue holds the "
                              "online encoder's own embeddings", fingerprint_default=True)
    matryoshka_dims: str = _f("", "Matryoshka training (mode full): comma-separated embedding widths, e.g. 384,256,128,64, "
                                  "whose truncated embeddings each get the loss (sentence-transformers' MatryoshkaLoss); "
                                  "recorded in the model folder (matryoshka.json) for `retrieval index build --dim`; "
                                  "'': off", fingerprint_default=True)
    num_negatives: int = _f(3, "mined hard negatives per query (mode full); 3 beat 1 on overall nDCG@10 at every seed "
                               "on both datasets measured (README 'Recipes, measured') at ~2x the training time; "
                               "1 is the fast choice")
    corpus_negatives: int = _f(0, "mode query: K negatives per query and step drawn at random from the frozen corpus "
                                  "(never a known positive or a masked suspect), to measure what K does; 0: every "
                                  "document of the corpus", fingerprint_default=True)
    starved: str = _f("in-batch", "queries left with fewer than --num-negatives mined negatives after the false-negative "
                                  "filter (mode full): 'in-batch' trains them on in-batch negatives alone, 'drop' leaves "
                                  "them out, as the plain sentence-transformers recipe does", choices=("in-batch", "drop"),
                       fingerprint_default=True)
    rank_start: int = _f(10, "mined negatives come from base-model ranks [rank_start, rank_end), counted among "
                             "non-positive documents")
    rank_end: int = _f(100, "end of the mining rank window (exclusive)")
    margin: float = _f(0.95, "candidates scoring above margin x the positive's score are likely false negatives: "
                              "dropped from mining, masked in mode query (NV-Retriever rule)")
    gradient_cache: bool = _f(False, "GradCache: large batches in bounded memory (mode full)")
    mini_batch_size: int = _f(32, "mini-batch size for --gradient-cache")
    query_max_length: int = _f(64, "tokens kept of each query while training")
    doc_max_length: int = _f(256, "tokens kept of each document while training (mode full); 128 halves the "
                                  "training stage, and cost 2.5 points nDCG@10 on manual pages while gaining 1.6 on "
                                  "SciFact's unseen documents (README 'Where a training step's time goes')")
    precision: str = _f("auto", "bf16/fp16 autocast or fp32; auto: bf16 on GPUs and CPUs that support it, else fp32",
                        choices=("auto", "bf16", "fp16", "fp32"))
    interpolate: str = _f("none", "WiSE-FT: mix base and tuned weights, (1-a)*base + a*tuned; 'auto' picks a in "
                                  "{0, .25, .5, .75, 1} on the --select-on dev queries, a number fixes it, 'none' keeps "
                                  "the tuned weights (the default: on ~100 dev queries 'auto' chose on noise and cost up "
                                  "to 1.9 points on test, README 'Recipes, measured'; the recommendation already falls "
                                  "back to the base model when tuning did not help)")
    early_stopping: int = _f(0, "stop after this many dev evaluations without improvement (0: never)")
    evals_per_epoch: int = _f(1, "dev evaluations (and checkpoints) per epoch; the best dev nDCG@10 is kept")
    seed: int = _f(42, "seed for the dev split, sampling, mining and initialisation")
    batch_size_encode: int = _f(64, "batch size when encoding for indexes and evaluation")

    def fingerprint(self, *, exclude: tuple[str, ...] = ("test_split", "batch_size_encode")) -> str:
        """A hash of the settings that change the trained model (checkpoints resume only under the same one)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in exclude}
        for f in dataclasses.fields(self):  # fields added later count only when set: older runs keep their hash
            before = f.metadata.get("fingerprint_default")  # True: the default; else the value runs had before it
            if before is not None and data.get(f.name) == (f.default if before is True else before):
                data.pop(f.name, None)
            elif f.metadata.get("loss_only", self.loss) != self.loss:  # a knob of a loss not trained
                data.pop(f.name, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Raise a one-line UsageError naming the flag when the settings are out of range or do not combine."""
        from finetune.config_checks import check

        check(self)

    def parsed_matryoshka_dims(self) -> list[int]:
        """``--matryoshka-dims`` as a list of widths (empty when off); UsageError when it does not parse."""
        from retrieval.errors import UsageError

        text = self.matryoshka_dims.strip()
        if not text:
            return []
        try:
            dims = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            dims = []
        if not dims or any(d <= 0 for d in dims) or len(set(dims)) != len(dims):
            raise UsageError(f"--matryoshka-dims must be distinct positive integers separated by commas, e.g. "
                             f"384,256,128,64; got {self.matryoshka_dims!r}")
        return dims


def precision_flags(precision: str) -> dict[str, bool]:
    """Trainer flags for the chosen precision; ``auto`` picks bf16 where the hardware runs it natively."""
    import torch

    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            from retrieval.backends import native_bf16

            precision = "bf16" if native_bf16("cpu") else "fp32"
    if precision == "fp16" and not torch.cuda.is_available():
        from retrieval.errors import UsageError

        raise UsageError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def add_to_parser(parser, cls=FinetuneConfig) -> None:
    """One ``--flag`` per dataclass field, typed, with the field's help and default."""
    group = parser.add_argument_group("fine-tuning")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if f.type in ("bool", bool):
            group.add_argument(flag, action=argparse_bool(), default=f.default, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            group.add_argument(flag, type=kind, default=f.default, choices=f.metadata.get("choices"), help=help_text)


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction


def from_args(args: Any, cls=FinetuneConfig) -> FinetuneConfig:
    config = cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
    config.validate()
    return config
