"""Weight-space interpolation between the base and the tuned model (WiSE-FT).

Fine-tuning on a few hundred queries moves the weights towards what those queries need and
away from what made the base model good elsewhere. Wortsman et al. (2022, "Robust
fine-tuning of zero-shot models", arXiv:2109.01903) showed that the straight line between
the two weight vectors, ``(1 - a) * base + a * tuned``, holds models that keep most of the
in-domain gain and lose little out of domain; FlagEmbedding's LM-Cocktail mixes embedders the
same way against forgetting. Here ``a`` is chosen on dev queries whose relevant documents
were never training positives (:mod:`finetune.dev_split`), so the mix is tuned for the
documents users will search next, not the ones the model memorised.

``a = 0`` gives exactly the base model, ``a = 1`` exactly the tuned one. Only floating-point
tensors are mixed (integer buffers such as position ids are the tuned model's).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def mixed_state(base: SentenceTransformer, tuned: SentenceTransformer, alpha: float) -> dict[str, torch.Tensor]:
    """The state dict ``(1 - alpha) * base + alpha * tuned``; the two models must share an architecture."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"interpolation weight must be in [0, 1], got {alpha}")
    base_state, tuned_state = base.state_dict(), tuned.state_dict()
    if base_state.keys() != tuned_state.keys():
        missing = sorted(base_state.keys() ^ tuned_state.keys())[:3]
        raise ValueError(f"base and tuned models differ in their parameters (e.g. {', '.join(missing)}); cannot interpolate")
    mixed = {}
    for name, t in tuned_state.items():
        b = base_state[name].to(t.device)
        if not t.is_floating_point() or alpha == 1.0:
            mixed[name] = t.clone()
        elif alpha == 0.0:
            mixed[name] = b.clone()
        else:
            mixed[name] = torch.lerp(b.float(), t.float(), alpha).to(t.dtype)
    return mixed


def interpolate(base: SentenceTransformer, tuned: SentenceTransformer, alpha: float) -> SentenceTransformer:
    """A new model with weights ``(1 - alpha) * base + alpha * tuned`` (neither input changes)."""
    model = copy.deepcopy(tuned)
    model.load_state_dict(mixed_state(base, tuned, alpha))
    return model


def choose_alpha(base: SentenceTransformer, tuned: SentenceTransformer, score: Callable[[SentenceTransformer], float],
                 alphas: Sequence[float] = ALPHAS, known: dict[float, float] | None = None) -> tuple[float, dict[float, float]]:
    """The weight whose mix scores best (ties go to the smaller weight, nearer the base model) and every score.

    ``known`` holds scores already measured (the base model's at 0, the selected checkpoint's at 1)
    so that they are not evaluated again.
    """
    scores = {}
    for alpha in sorted(alphas):
        if known and alpha in known:
            scores[alpha] = known[alpha]
            continue
        scores[alpha] = score(interpolate(base, tuned, alpha))
        logger.info("interpolation a=%.2f: dev score %.4f", alpha, scores[alpha])
    best = max(scores.values())
    return min(a for a, s in scores.items() if s >= best - 1e-12), scores
