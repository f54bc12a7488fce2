"""The recipes ``bench/recipes.py`` compares: each a set of :class:`finetune.config.FinetuneConfig` knobs.

Rows measured before a default moved keep the knobs they measured (the ``setdefault`` loop at the
end), so a row's name keeps its meaning as the defaults move.

Recipes (``--recipes``, default all):

* ``full-n3``: mode full, 1 epoch, lr 3e-5, three mined negatives, attention dropout 0, no interpolation (the
  default recipe until ``n3-2ep`` beat it), its knobs spelled out; ``full-n1`` the same with one mined negative;
* ``query``: the query encoder against the frozen corpus (this project's first default),
  20 epochs, lr 4e-5, checkpoint on all dev queries, no interpolation;
* ``query-wise``: the same, checkpoint chosen on dev-unseen, then WiSE-FT interpolation with
  the base weights, the weight chosen on dev-unseen;
* ``full``: one shared encoder, InfoNCE over in-batch + 1 mined negative (known positives
  masked), 1 epoch, lr 3e-5, no interpolation (read from the ``full-wise`` run's checkpoint:
  one training serves both rows);
* ``full-wise``: ``full`` followed by WiSE-FT, the weight chosen on dev-unseen;
* ``full-3ep``: ``full`` for 3 epochs at lr 2e-5, checkpoint and weight chosen on dev-unseen;
* ``full-drop``: ``full`` with ``--starved drop``: queries left without a mined negative are not
  trained on (the plain recipe has no row for them);
* ``full-plain``: ``full`` with the plain recipe's knobs where ours differ: ``--starved drop`` and
  weight decay 0 (the trainer's default) instead of 0.01, no interpolation;
* ``full-nce``, ``full-siglip``, ``full-triplet``: ``full`` with ``--loss nce|siglip|triplet``
  (same data, negatives, steps and seed; no interpolation, so each compares with ``full``);
* ``full-queue``: ``full`` with a MoCo-style queue (``--queue-size 256``, no momentum copy: 20-odd
  steps are too few for a 0.999 key encoder to move off the base model), so each query sees
  the last batches' documents as extra negatives; no interpolation, compares with ``full``;
* ``full-matryoshka``: ``full`` under ``MatryoshkaLoss`` (``--matryoshka-dims 384,256,128,64``),
  scored at the full width (``retrieval tune`` reports every width); no interpolation;
* ``full-ad0``: ``full-wise`` with ``--attention-dropout 0`` (every other row keeps MiniLM's 0.1): PyTorch's
  fused attention kernel runs while training, ~1.8x faster steps on CPU (``bench/profile_train.py``);
* ``full-ad0-n3``: ``full-ad0`` with three mined negatives per query instead of one;
* ``full-ad0-a1``, ``full-ad0-n3-a1``: those runs' selected checkpoints before WiSE-FT (a = 1), as ``full`` is
  ``full-wise``'s;
* ``n3-nce``, ``n3-siglip``, ``n3-triplet``, ``n3-queue``, ``n3-matryoshka``: the loss family, the queue and
  Matryoshka on the default recipe ``full-n3`` (each compares with it);
* ``n3-momentum``: ``n3-queue`` with the queue embedded by a momentum copy of the encoder (``--momentum 0.9``);
* ``n3-lora``: ``full-n3`` training rank-16 LoRA adapters (alpha 32, ``peft``) on every linear layer at lr 3e-4
  instead of every weight, merged into a plain model at export;
* ``n3-2ep``: ``full-n3`` for two epochs, the checkpoint (end of epoch 1 or 2) chosen on dev-unseen: the default
  recipe for a day (2026-12-03), until ``n3-3ep`` beat it at three seeds on both datasets;
* ``st-plain``: the plain sentence-transformers recipe, no code of ours in the loop:
  ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss``, the same mined negative,
  1 epoch, lr 3e-5, bf16 where the CPU has it, no dev selection;
* ``n1-2ep``: ``n3-2ep`` with one mined negative per query (half the training time);
* ``n3-2ep-ad1``: ``n3-2ep`` with MiniLM's attention dropout 0.1 kept (the default turns it off for speed);
* ``n3-3ep``: ``n3-2ep`` for three epochs (checkpoint chosen among the three on dev-unseen): the default recipe since
  2026-12-04;
* ``n3-3ep-hd0``: ``n3-3ep`` with MiniLM's hidden-state dropout 0.1 off as well (``--hidden-dropout 0``): its
  Bernoulli masks are ~9% of a CPU training step (2026-12-07): SciFact +0.9 and +1.0 at seeds 42 and 7 (on
  seen documents), manual pages -0.2, +0.2, -0.2 at seeds 42, 7, 13 (none significant), so not the default;
* ``n3-3ep-d128``: ``n3-3ep`` with documents cut to 128 tokens while training (``--doc-max-length 128``; the
  indexes and the test still embed 256): documents are four of each row's five texts; 2.1x faster training,
  SciFact unseen +1.6, manual pages -2.5 (seed 42);
* ``n3-3ep-nce``, ``n3-3ep-siglip``, ``n3-3ep-triplet``, ``n3-3ep-queue``, ``n3-3ep-momentum`` (the queue embedded by a
  momentum copy, m = 0.9), ``n3-3ep-matryoshka``: the loss family, the queue and Matryoshka on the default recipe
  ``n3-3ep`` (each compares with it; about 20 min a row on SciFact on a 2-core CPU without AMX; triplet and SigLIP
  measured on 2026-12-06, Matryoshka, the queue and the momentum queue on 2026-12-07, README "The contrastive
  family and K, measured"; NCE as ``n3-3ep-nce-fit``);
* ``n3-3ep-siglip-fit``: ``n3-3ep-siglip`` from ``--siglip-init fit`` (t = 1/tau = 20, b the loss's minimiser on the
  first batch) instead of the paper's start, which suits training from scratch (the rows before it keep
  ``siglip_init="paper"``);
* ``n3-3ep-nce-fit``: ``n3-3ep-nce`` with NCE's learnt offset c (``--nce-bias fit``, started at the loss's
  minimiser on the first batch); the rows before it keep ``nce_bias="none"``;
* ``st-plain-2ep``: ``st-plain`` for two epochs, the default's budget (still no dev selection: the plain
  recipe keeps the last step).
"""

RECIPES = {
    "query": dict(mode="query", epochs=20, learning_rate=4e-5, select_on="all", interpolate="none"),
    "query-wise": dict(mode="query", epochs=20, learning_rate=4e-5, select_on="unseen", interpolate="auto"),
    "full-wise": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="auto"),
    "full-3ep": dict(mode="full", epochs=3, learning_rate=2e-5, select_on="unseen", interpolate="auto"),
    # the plain recipe's data inside ours: queries starved of a mined negative left out
    "full-drop": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none", starved="drop"),
    # every knob where ours and the plain recipe differ, set the plain recipe's way
    "full-plain": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none", starved="drop",
                       weight_decay=0.0),
    # the loss family (issue 16) on the same budget as ``full`` (InfoNCE, no interpolation)
    "full-nce": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none", loss="nce"),
    "full-siglip": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none", loss="siglip"),
    "full-triplet": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none", loss="triplet"),
    # first measured with attention dropout 0 (2026-12-03): each compares with full-n1, the same but for the queue / loss
    "full-queue": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none", queue_size=256,
                       attention_dropout=0.0),
    "full-matryoshka": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none",
                            matryoshka_dims="384,256,128,64", attention_dropout=0.0),
    # issue 17: ``full-wise`` with the attention dropout off, so training runs SDPA's fused kernel (the default since)
    "full-ad0": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="auto", attention_dropout=0.0),
    # three mined negatives per query (FlagEmbedding and Tevatron train with groups of 1 positive + several negatives)
    "full-ad0-n3": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="auto",
                        attention_dropout=0.0, num_negatives=3),
    # attention dropout 0, no interpolation, 1 or 3 mined negatives (full-n3: the default for a day, then n3-2ep), knobs
    # spelled out so the rows keep their meaning if defaults move again
    "full-n1": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none",
                    attention_dropout=0.0, num_negatives=1),
    "full-n3": dict(mode="full", epochs=1, learning_rate=3e-5, select_on="unseen", interpolate="none",
                       attention_dropout=0.0, num_negatives=3),
}
# the loss family, the queue and Matryoshka (issue 16) on the default recipe (full-n3, 2026-12-03): each compares with
# full-n3, the same but for that one knob
FAMILY = {"nce": dict(loss="nce"), "siglip": dict(loss="siglip"), "triplet": dict(loss="triplet"),
          "queue": dict(queue_size=256), "matryoshka": dict(matryoshka_dims="384,256,128,64"),
          # the queue embedded by a momentum copy of the encoder (MoCo); m = 0.9, not MoCo's 0.999, which suits 10^5
          # steps: in 22-65 steps a 0.999 copy would stay the base model (0.9 trails the online one by ~ten steps)
          "momentum": dict(queue_size=256, momentum=0.9)}
for _name, _knob in FAMILY.items():
    RECIPES[f"n3-{_name}"] = {**RECIPES["full-n3"], **_knob}
# two epochs, the checkpoint (end of epoch 1 or 2) chosen on dev-unseen: the default recipe on 2026-12-03
RECIPES["n3-2ep"] = {**RECIPES["full-n3"], "epochs": 2}
# the default at one mined negative: half its training time; is the third negative still worth it at two epochs?
RECIPES["n1-2ep"] = {**RECIPES["full-n1"], "epochs": 2}
# the default with MiniLM's attention dropout 0.1 kept: does it regularise at two epochs? (~5x the step time on CPU: 40 s vs 8 s)
RECIPES["n3-2ep-ad1"] = {**RECIPES["n3-2ep"], "attention_dropout": 0.1}
# a third epoch: manual pages gained +1.0 to +1.8 from the second at every seed (bench/checkpoints.py); it goes on
# (+1.5 to +2.2 more): the default recipe since 2026-12-04
RECIPES["n3-3ep"] = {**RECIPES["n3-2ep"], "epochs": 3}
# the default with MiniLM's hidden-state dropout 0.1 off too (issue 17: its Bernoulli masks are ~9% of a CPU step);
# measured 2026-12-07: SciFact +0.9 (p 0.041) at seed 42 and +1.0 (p 0.002) at seed 7, on seen documents; manual
# pages -0.2 (p 0.35), +0.2 (p 0.50), -0.2 (p 0.37) at seeds 42, 7, 13: not the default
RECIPES["n3-3ep-hd0"] = {**RECIPES["n3-3ep"], "hidden_dropout": 0.0}
# the default with documents cut to 128 tokens while training (issue 17: 76% of SciFact's documents reach the
# 256-token cap, and documents are four of a row's five texts); indexes and tests still embed 256 tokens. Seed 42
# (2026-12-07): training 2.1x faster; SciFact unseen +1.6 but seen -3.2; manual pages -2.5 (p < 0.001)
RECIPES["n3-3ep-d128"] = {**RECIPES["n3-3ep"], "doc_max_length": 128}
# the same family on the default recipe, three epochs (issue 16): each compares with n3-3ep, the same but for that one
# knob (the two-epoch rows queued on 2026-12-04 were never run; the default moved on before they could be)
for _name, _knob in FAMILY.items():
    RECIPES[f"n3-3ep-{_name}"] = {**RECIPES["n3-3ep"], **_knob}
# SigLIP from a start made for fine-tuning (t = 1/0.05, b fitted on the first batch) instead of the paper's t = 10,
# b = -10, under which b moved 0.025 in 65 steps and the row stayed level with base (2026-12-06). Seed 42
# (2026-12-07): level with n3-3ep on both datasets (SciFact -0.5, manual pages +0.4); since then the default of
# --siglip-init
RECIPES["n3-3ep-siglip-fit"] = {**RECIPES["n3-3ep-siglip"], "siglip_init": "fit"}
# NCE with its learnt offset c started at the loss's minimiser on the first batch (--nce-bias fit): without it the
# one-epoch row lost 9.5 points to InfoNCE on SciFact (2026-12-04). Seed 42 (2026-12-07): above base, below n3-3ep
# (SciFact -3.5, manual pages -1.6, p < 0.001 each)
RECIPES["n3-3ep-nce-fit"] = {**RECIPES["n3-3ep-nce"], "nce_bias": "fit"}
# LoRA (issue 13 (e)): rank-16 adapters on every linear layer, at the higher learning rate adapters train with
RECIPES["n3-lora"] = {**RECIPES["full-n3"], "lora_rank": 16, "lora_alpha": 32.0, "learning_rate": 3e-4}
for _recipe in RECIPES.values():  # rows measured before the defaults moved (2026-12-03) keep what they measured
    _recipe.setdefault("attention_dropout", 0.1)
    _recipe.setdefault("num_negatives", 1)
    _recipe.setdefault("siglip_init", "paper")  # SigLIP rows before --siglip-init fit became the default (2026-12-07)
    _recipe.setdefault("nce_bias", "none")  # NCE rows before --nce-bias fit (2026-12-07)
ALL = ["full-n3", "full-n1", "full-wise", "full", "full-ad0", "full-ad0-a1", "full-ad0-n3", "full-ad0-n3-a1", "st-plain", "query", "query-wise", "full-3ep", "full-drop", "full-plain", "full-nce", "full-siglip", "full-triplet",
       "full-queue", "full-matryoshka", "n3-nce", "n3-siglip", "n3-triplet", "n3-queue", "n3-matryoshka", "n3-momentum", "n3-lora", "n3-2ep", "n1-2ep", "st-plain-2ep", "n3-2ep-ad1", "n3-3ep", "n3-3ep-hd0",
       "n3-3ep-nce", "n3-3ep-siglip", "n3-3ep-triplet", "n3-3ep-queue", "n3-3ep-momentum", "n3-3ep-matryoshka",
       "n3-3ep-siglip-fit", "n3-3ep-d128", "n3-3ep-nce-fit"]
