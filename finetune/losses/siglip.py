"""SigLIP: a pairwise sigmoid loss with a learnt logit scale and bias (Zhai et al. 2023).

Like :mod:`finetune.losses.nce` every (query, candidate) pair is an independent binary decision,
but the logit is an affine map ``t * cos + b`` whose scale and bias are learnt, and the loss is
the paper's: summed over all pairs, divided by the number of queries. The bias, initialised
very negative, offsets the heavy imbalance of one positive against ``B(1+n) - 1`` negatives.

Mode full only (``--loss siglip --mode query`` is refused): query mode's loss is
:class:`~finetune.losses.frozen_corpus.FrozenCorpusInfoNCE` over the whole frozen corpus; a
sigmoid per (query, corpus document) pair is not built there, and the paper's bias
initialisation was chosen for batch-sized, not corpus-sized, imbalance.

Fine-tuning is not the paper's setting. Its start, ``t = 10, b = -10``, is made for a model whose
cosines are all near 0: every logit near -10, the loss small. A trained encoder already scores
its positives near 0.65 (SciFact, MiniLM), so at that start the positive terms dominate the loss,
and with ``t`` and ``b`` learnt at 1e-3 the bias moved 0.025 in 65 steps (README "The contrastive
family and K, measured"). ``init_bias=None`` (``--siglip-init fit``, the command line's default;
the class keeps the paper's) starts instead from the bias that minimises the loss on the first
batch (:func:`fitted_bias`), with ``t`` at InfoNCE's ``1/tau``: +7.3 nDCG@10 over the paper's start
on SciFact, level with InfoNCE on both datasets at seed 42 and on the manual pages at seed 7, 2.4
below it on SciFact at seed 7.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finetune.distributed import average_gradient_hook, mean_over_ranks
from finetune.losses.core import BatchLossMixin, PositivePairs, as_positive_pairs, candidate_mask
from finetune.losses.info_nce import cosine_scores

CITATION = """
@misc{zhai2023sigmoidlosslanguageimage,
      title={Sigmoid Loss for Language Image Pre-Training},
      author={Xiaohua Zhai and Basil Mustafa and Alexander Kolesnikov and Lucas Beyer},
      year={2023},
      eprint={2303.15343},
      archivePrefix={arXiv},
      primaryClass={cs.CV},
      url={https://arxiv.org/abs/2303.15343},
}
"""


def siglip_from_scores(
    scores: Tensor, targets: Tensor, mask: Tensor | None, scale: Tensor, bias: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Pairwise sigmoid loss of cosine ``scores`` with logit scale ``scale`` (``t``) and ``bias`` (``b``).

    .. math::

        \mathcal{L} = -\frac{1}{B}\sum_i \sum_{j \notin M_i} \log\sigma\big(z_{ij}(t\,s_{ij} + b)\big),
        \qquad z_{ij} = \begin{cases} +1 & j = t_i \\ -1 & \text{otherwise}\end{cases}

    Masked pairs ``M_i`` are dropped from the sum (exactly zero gradient); the divisor stays ``B``.
    """
    if scores.dim() != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [B, C] and targets [B]; got {tuple(scores.shape)} and {tuple(targets.shape)}")
    rows = torch.arange(scores.size(0), device=scores.device)
    logits = scores * scale + bias
    signs = torch.full_like(logits, -1.0)
    signs[rows, targets] = 1.0
    terms = -F.logsigmoid(signs * logits)
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from scores {tuple(scores.shape)}")
        assert not bool(mask[rows, targets].any()), "a target candidate is masked: its query would have no positive"
        terms = terms.masked_fill(mask, 0.0)
    loss = terms.sum() / scores.size(0)
    with torch.no_grad():
        visible = logits.masked_fill(mask, float("-inf")) if mask is not None else logits
        n_candidates = (~mask).sum(dim=1) if mask is not None else torch.full_like(rows, scores.size(1))
        stats = {
            "accuracy": (visible.argmax(dim=1) == targets).float().mean(),
            "n_candidates": n_candidates.to(scores.dtype).mean(),
            "positive_probability": torch.sigmoid(logits[rows, targets]).mean(),
        }
    return loss, stats


def fitted_bias(
    scores: Tensor, targets: Tensor, mask: Tensor | None, scale: float, iterations: int = 100,
    mean_negatives: bool = False,
) -> float:
    r"""The bias ``b`` minimising :func:`siglip_from_scores` on these ``scores`` at logit scale ``scale``.

    The loss is convex in ``b`` and its derivative is

    .. math:: \frac{\partial \mathcal{L}}{\partial b} = \frac{1}{B}\Big(\sum_{i,\,j \ne t_i,\,j \notin M_i}
              \sigma(\ell_{ij}) - \sum_i \big(1 - \sigma(\ell_{i t_i})\big)\Big),

    the push on the negatives minus the pull on the positives. At its zero the two balance, as
    they do by construction in InfoNCE's gradient (the positive's ``1 - p`` equals the negatives'
    summed ``p``). Found by bisection in float64 on ``[-scale - 40, scale + 40]``: cosines are in
    [-1, 1], so at the left end every logit is below -40 (the derivative is about ``-1``) and at
    the right end above 40 (about the number of negatives per query).

    ``mean_negatives=True`` weighs each row's negatives by ``1 / |N_i|`` (their mean, not their
    sum): the normalisation of :func:`finetune.losses.nce.nce_from_scores`, whose bias this then is.
    """
    if scores.dim() != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [B, C] and targets [B]; got {tuple(scores.shape)} and {tuple(targets.shape)}")
    rows = torch.arange(scores.size(0), device=scores.device)
    scaled = scores.detach().double() * float(scale)
    negative = torch.ones_like(scaled, dtype=torch.bool)
    negative[rows, targets] = False
    if mask is not None:
        negative &= ~mask
    if not bool(negative.any()):
        raise ValueError("no unmasked negative in the batch: the loss has no minimum in b")
    weights = negative.double()
    if mean_negatives:
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1)
    positives = scaled[rows, targets]
    low, high = -float(scale) - 40.0, float(scale) + 40.0
    for _ in range(iterations):
        b = (low + high) / 2
        slope = (weights * torch.sigmoid(scaled + b)).sum() - (1 - torch.sigmoid(positives + b)).sum()
        low, high = (low, b) if slope > 0 else (b, high)
    return (low + high) / 2


class SigLIP(BatchLossMixin, nn.Module):
    r"""SigLIP's sigmoid loss over in-batch positives and hard negatives, masking known positives.

    For query ``q_i`` of a batch of ``B`` rows with columns ``(query, positive, negative_1..n)``,
    the candidates ``d_j`` are all ``B * (1 + n)`` documents of the batch and

    .. math:: \mathcal{L} = -\frac{1}{B}\sum_{i=1}^{B}\sum_{j \notin M_i}
              \log \sigma\big(z_{ij}\,(t \cos(q_i, d_j) + b)\big), \qquad t = e^{t'}

    with ``z_ij = +1`` for ``q_i``'s own positive and ``-1`` for every other candidate; ``t'`` and
    ``b`` are parameters of the loss, initialised as in the paper to ``t' = log 10`` and
    ``b = -10``, and not clamped (the paper clamps neither). With ``init_bias=None`` the bias is
    set on the first batch instead, before its loss is computed, to :func:`fitted_bias` of that
    batch's scores (averaged over processes under ``torchrun``); a resumed run fits it again.
    The divisor is the number of queries, as in the paper's pseudo-code
    (``-sum(log_sigmoid(labels * logits)) / n``). There is no temperature: ``t`` plays its part
    and is learnt.

    ``M_i``, the candidates known to be relevant to ``q_i`` (other than its positive), are left
    out of the sum and get exactly zero gradient, as in :class:`~finetune.losses.info_nce.InfoNCE`.
    No cross-process gathering (the paper's chunked ring exchange is not implemented): under
    ``torchrun`` each process scores its own rows against its own batch only; the gradients of
    ``t'`` and ``b`` are averaged across processes, so they stay equal on every rank.

    Inputs:
        +--------------------------------------------------+-------------------------------------------------+
        | Texts                                            | Labels                                          |
        +==================================================+=================================================+
        | (query, positive, negative_1, ..., negative_n)   | ``[query_idx, pos_doc_idx, neg_1_doc_idx, ...]`` |
        +--------------------------------------------------+-------------------------------------------------+

    Args:
        model: the SentenceTransformer being trained.
        init_scale: initial ``t`` (the parameter is ``t' = log t``).
        init_bias: initial ``b``; ``None``: fitted on the first batch (:func:`fitted_bias`).
        positives: ``{query_idx: {doc_idx, ...}}`` of all known positives (or a :class:`PositivePairs`).
        mask_known_positives: remove known positives from each query's negatives.

    References: Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training" (arXiv:2303.15343).

    Example::

        loss = SigLIP(model, positives={0: {3, 7}, 1: {4}})
        trainer = SentenceTransformerTrainer(model=model, train_dataset=rows, loss=loss)
    """

    def __init__(
        self,
        model: nn.Module,
        init_scale: float = 10.0,
        init_bias: float | None = -10.0,
        positives: Mapping[int, Iterable[int]] | PositivePairs | None = None,
        mask_known_positives: bool = True,
    ) -> None:
        super().__init__()
        if not init_scale > 0:
            raise ValueError("init_scale must be positive")
        self.model = model
        self.init_scale = float(init_scale)
        self.init_bias = None if init_bias is None else float(init_bias)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_scale)))  # t'
        self.logit_bias = nn.Parameter(torch.tensor(-10.0 if init_bias is None else float(init_bias)))  # b
        self._bias_to_fit = init_bias is None
        for parameter in (self.logit_scale, self.logit_bias):
            parameter.register_hook(average_gradient_hook)
        self.positives = as_positive_pairs(positives)
        self.mask_known_positives = mask_known_positives

    @property
    def scale(self) -> float:
        return float(self.logit_scale.detach().exp())

    @property
    def bias(self) -> float:
        return float(self.logit_bias.detach())

    def loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one batch from its column embeddings ``[queries, positives, negatives_1..n]``."""
        if len(embeddings) < 2:
            raise ValueError(f"SigLIP needs at least (query, positive) columns, got {len(embeddings)}")
        queries, candidates = embeddings[0], torch.cat(embeddings[1:], dim=0)
        ids = self._batch_ids(labels, len(embeddings), queries.size(0), queries.device)
        targets = torch.arange(queries.size(0), device=queries.device)
        mask = candidate_mask(ids, self.positives)
        scores = cosine_scores(queries, candidates)
        if self._bias_to_fit:
            self._fit_bias(scores, targets, mask)
        loss, stats = siglip_from_scores(scores, targets, mask, self.logit_scale.float().exp(), self.logit_bias.float())
        stats["scale"], stats["bias"] = self.logit_scale.detach().exp(), self.logit_bias.detach().clone()
        return loss, stats

    @torch.no_grad()
    def _fit_bias(self, scores: Tensor, targets: Tensor, mask: Tensor | None) -> None:
        fitted = fitted_bias(scores, targets, mask, float(self.logit_scale.exp()))
        self.logit_bias.fill_(float(mean_over_ranks(torch.tensor(fitted, device=self.logit_bias.device))))
        self.fitted_init_bias, self._bias_to_fit = float(self.logit_bias), False

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "init_scale": self.init_scale,
            "init_bias": "fit on the first batch" if self.init_bias is None else self.init_bias,
            **({"fitted_init_bias": getattr(self, "fitted_init_bias", None)} if self.init_bias is None else {}),
            "mask_known_positives": self.mask_known_positives,
            "known_positive_pairs": len(self.positives) if self.positives is not None else 0,
        }

    @property
    def citation(self) -> str:
        return CITATION
