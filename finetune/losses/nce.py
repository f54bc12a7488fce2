"""NCE: every in-batch candidate a binary relevant / not-relevant decision, instead of one softmax.

Same candidates, logits and false-negative mask as :class:`~finetune.losses.info_nce.InfoNCE`
(the ``B * (1 + n)`` documents of the batch, ``cos / tau``); where InfoNCE asks "which candidate
is the positive?", NCE asks of each candidate separately "is this the positive?" (logistic
regression on the logit, Gutmann & Hyvärinen 2010). The loss of a row therefore no longer
depends on how the other candidates score against each other, only on each one's own score.

Without an offset the sigmoid of ``cos / tau`` calls every candidate relevant: at tau = 0.05 a
negative at cosine 0.3 has logit 6 and probability 0.998, so the loss spends itself pushing every
negative below cosine 0 and pulls the embedding space apart (SciFact at one epoch: 0.5815 against
InfoNCE's 0.6763, README "The contrastive family and K, measured"). Gutmann & Hyvärinen's NCE has
the offset: the model's log-density carries a normalising constant ``c`` learnt as a parameter
with the others. ``fit_bias=True`` (``--nce-bias fit``, the command line's default; the class
default keeps the plain logit) adds ``c`` to every logit, starts it at the value that minimises the
loss on the first batch (:func:`finetune.losses.siglip.fitted_bias` with this loss's
normalisation) and learns it. With it, at three epochs: above base but below InfoNCE on both
datasets (SciFact -3.5, manual pages -1.6 nDCG@10, seed 42). SigLIP from its fitted start is this
loss with the *sum* over a row's negatives (its learnt scale moved by under 2% in those runs) and
is level with InfoNCE at seed 42: the mean is what costs the points (README).

Mode full only (``--loss nce --mode query`` is refused): query mode trains against the frozen
corpus with :class:`~finetune.losses.frozen_corpus.FrozenCorpusInfoNCE`, a softmax over every
document, and an NCE over thousands of frozen documents per query (one positive against all of
them, each its own binary term) is not built; the default recipe is mode full.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finetune.distributed import average_gradient_hook, mean_over_ranks
from finetune.losses.core import BatchLossMixin, PositivePairs, as_positive_pairs, candidate_mask
from finetune.losses.info_nce import cosine_scores
from finetune.losses.siglip import fitted_bias

CITATION = """
@inproceedings{gutmann2010noise,
    title={Noise-contrastive estimation: A new estimation principle for unnormalized statistical models},
    author={Gutmann, Michael and Hyv{\\"a}rinen, Aapo},
    booktitle={Proceedings of the Thirteenth International Conference on Artificial Intelligence and Statistics},
    pages={297--304},
    year={2010},
    url={https://proceedings.mlr.press/v9/gutmann10a.html},
}
"""


def nce_from_scores(
    scores: Tensor, targets: Tensor, mask: Tensor | None = None, temperature: float = 0.05,
    bias: Tensor | float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Binary cross-entropy of every unmasked candidate: target column 1, the others 0.

    .. math::

        \mathcal{L} = \frac{1}{B}\sum_i \Big[\operatorname{softplus}(-s_{i,t_i}/\tau)
        + \frac{1}{|N_i|}\sum_{j \in N_i} \operatorname{softplus}(s_{i,j}/\tau)\Big]

    (``softplus(-x) = -log sigmoid(x)``, ``softplus(x) = -log(1 - sigmoid(x))``), with ``N_i`` the
    candidates of row ``i`` other than its target ``t_i`` and not masked. Masked candidates are
    dropped from the sum and from ``|N_i|``, so they get exactly zero gradient. A ``bias`` ``c`` is
    added to every logit (``s / tau + c``; NCE's learnt log-normaliser, see :class:`NCE`).
    """
    if scores.dim() != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [B, C] and targets [B]; got {tuple(scores.shape)} and {tuple(targets.shape)}")
    rows = torch.arange(scores.size(0), device=scores.device)
    logits = scores * (1.0 / temperature) + bias
    is_target = torch.zeros_like(scores, dtype=torch.bool)
    is_target[rows, targets] = True
    negatives = ~is_target
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from scores {tuple(scores.shape)}")
        assert not bool(mask[rows, targets].any()), "a target candidate is masked: its query would have no positive"
        negatives &= ~mask
    terms = F.binary_cross_entropy_with_logits(logits, is_target.to(logits.dtype), reduction="none")
    n_negatives = negatives.sum(dim=1)
    negative_term = terms.masked_fill(~negatives, 0.0).sum(dim=1) / n_negatives.clamp(min=1)
    loss = (terms[rows, targets] + negative_term).mean()
    with torch.no_grad():
        visible = logits.masked_fill(mask, float("-inf")) if mask is not None else logits
        stats = {
            "accuracy": (visible.argmax(dim=1) == targets).float().mean(),
            "n_candidates": (n_negatives + 1).to(scores.dtype).mean(),
            "positive_probability": torch.sigmoid(logits[rows, targets]).mean(),
        }
    return loss, stats


class NCE(BatchLossMixin, nn.Module):
    r"""NCE over in-batch positives and hard negatives, masking known positives.

    For query ``q_i`` of a batch of ``B`` rows with columns ``(query, positive, negative_1..n)``,
    the candidates ``d_j`` are all ``B * (1 + n)`` documents of the batch and
    ``s_ij = cos(q_i, d_j) / tau``. Each candidate is a logistic-regression example, label 1 for
    ``q_i``'s own positive and 0 for the other unmasked candidates:

    .. math:: \mathcal{L}_i = -\log \sigma(s_{i,p_i})
              - \frac{1}{|N_i|}\sum_{j \in N_i} \log\big(1 - \sigma(s_{ij})\big),
              \qquad \mathcal{L} = \frac{1}{B}\sum_i \mathcal{L}_i

    Normalisation (a choice): the positive term plus the *mean* over the row's negatives, then
    the mean over rows. Gutmann & Hyvärinen sum the terms of the ``nu`` noise samples; with
    ``nu = B(1 + n) - 1`` in-batch candidates that would give the positive a ``1/nu`` share of the
    loss and tie its scale (hence the learning rate) to the batch size. The logit is the scaled
    cosine, without NCE's ``- log(nu p_noise)`` correction (the batch has no known noise density),
    plus, with ``fit_bias=True``, a learnt offset ``c`` (NCE's learnt log-normalising constant):
    ``s_ij = cos(q_i, d_j) / tau + c``. ``c`` starts at the minimiser of the loss on the first batch
    (averaged over processes under ``torchrun``, whose gradients of ``c`` are averaged too) and is
    learnt (at 1e-3 on the command line); a resumed run fits it again. Without it (the default of
    the class) this is the "negative sampling" simplification (Mikolov et al. 2013).

    ``M_i``, the candidates known to be relevant to ``q_i`` (other than its positive), are left
    out of ``N_i`` and get exactly zero gradient, as in :class:`~finetune.losses.info_nce.InfoNCE`.
    No cross-process gathering: under ``torchrun`` each process scores its own rows against its
    own batch only.

    Inputs:
        +--------------------------------------------------+-------------------------------------------------+
        | Texts                                            | Labels                                          |
        +==================================================+=================================================+
        | (query, positive, negative_1, ..., negative_n)   | ``[query_idx, pos_doc_idx, neg_1_doc_idx, ...]`` |
        +--------------------------------------------------+-------------------------------------------------+

    Args:
        model: the SentenceTransformer being trained.
        temperature: ``tau``; logits are ``cos / tau``.
        positives: ``{query_idx: {doc_idx, ...}}`` of all known positives (or a :class:`PositivePairs`).
        mask_known_positives: remove known positives from each query's negatives.
        fit_bias: add the learnt offset ``c``, fitted on the first batch.

    References: Gutmann & Hyvärinen 2010 (AISTATS); Mikolov et al. 2013 (negative sampling,
    arXiv:1310.4546); Ma & Collins 2018 (binary vs ranking NCE, arXiv:1809.01812).

    Example::

        loss = NCE(model, temperature=0.05, positives={0: {3, 7}, 1: {4}}, fit_bias=True)
        trainer = SentenceTransformerTrainer(model=model, train_dataset=rows, loss=loss)
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        positives: Mapping[int, Iterable[int]] | PositivePairs | None = None,
        mask_known_positives: bool = True,
        fit_bias: bool = False,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        self.model = model
        self.temperature = float(temperature)
        self.positives = as_positive_pairs(positives)
        self.mask_known_positives = mask_known_positives
        self.fit_bias = fit_bias
        if fit_bias:  # named as SigLIP's, so the trainer's 1e-3 learning-rate mapping finds it
            self.logit_bias = nn.Parameter(torch.tensor(0.0))
            self.logit_bias.register_hook(average_gradient_hook)
            self._bias_to_fit = True

    def loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one batch from its column embeddings ``[queries, positives, negatives_1..n]``."""
        if len(embeddings) < 2:
            raise ValueError(f"NCE needs at least (query, positive) columns, got {len(embeddings)}")
        queries, candidates = embeddings[0], torch.cat(embeddings[1:], dim=0)
        ids = self._batch_ids(labels, len(embeddings), queries.size(0), queries.device)
        targets = torch.arange(queries.size(0), device=queries.device)
        mask = candidate_mask(ids, self.positives)
        scores = cosine_scores(queries, candidates)
        if not self.fit_bias:
            loss, stats = nce_from_scores(scores, targets, mask, self.temperature)
        else:
            if self._bias_to_fit:
                self._fit_bias(scores, targets, mask)
            loss, stats = nce_from_scores(scores, targets, mask, self.temperature, self.logit_bias.float())
            stats["bias"] = self.logit_bias.detach().clone()
        stats["temperature"] = torch.tensor(self.temperature)
        return loss, stats

    @torch.no_grad()
    def _fit_bias(self, scores: Tensor, targets: Tensor, mask: Tensor | None) -> None:
        fitted = fitted_bias(scores, targets, mask, 1.0 / self.temperature, mean_negatives=True)
        self.logit_bias.fill_(float(mean_over_ranks(torch.tensor(fitted, device=self.logit_bias.device))))
        self.fitted_init_bias, self._bias_to_fit = float(self.logit_bias), False

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            **({"bias": "fit on the first batch, learnt", "fitted_init_bias": getattr(self, "fitted_init_bias", None)}
               if self.fit_bias else {}),
            "mask_known_positives": self.mask_known_positives,
            "known_positive_pairs": len(self.positives) if self.positives is not None else 0,
        }

    @property
    def citation(self) -> str:
        return CITATION
