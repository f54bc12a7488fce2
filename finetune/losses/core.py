"""The functional core of every InfoNCE loss here: scores in, masked cross-entropy and statistics out.

Pure torch, no model and no process group, so that :class:`~finetune.losses.info_nce.InfoNCE`,
its gradient-cached twin and the frozen-corpus loss all share one tested definition of the
objective and of the false-negative mask. Known positives are looked up in a sorted tensor of
``query_idx * stride + doc_idx`` keys (:class:`PositivePairs`), so masking a batch costs one
``searchsorted`` instead of a Python loop over queries x candidates.

The other losses of the family (NCE, SigLIP, triplet) share the batch layout through
:func:`candidate_mask`; they and InfoNCE share the label handling and statistics through
:class:`BatchLossMixin`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

try:  # merges the candidate columns into one forward pass, as MultipleNegativesRankingLoss does
    from sentence_transformers.base.losses.merged_forward import embed_columns
except ImportError:  # pragma: no cover - older sentence-transformers
    def embed_columns(model: nn.Module, features_list: Iterable[dict[str, Tensor]]) -> list[Tensor]:
        return [model(features)["sentence_embedding"] for features in features_list]

class PositivePairs:
    """The known relevant ``(query_idx, doc_idx)`` pairs of a training set, for vectorised lookup.

    Built once from ``{query_idx: {doc_idx, ...}}``; negative or out-of-range indices are never
    positives (so ``-1`` can stand for "no id").
    """

    def __init__(self, positives: Mapping[int, Iterable[int]]) -> None:
        pairs = [(int(q), int(d)) for q, docs in positives.items() for d in docs]
        if any(q < 0 or d < 0 for q, d in pairs):
            raise ValueError("positives must map non-negative query indices to non-negative doc indices")
        self.stride = max((d for _, d in pairs), default=-1) + 1
        keys = torch.tensor([q * self.stride + d for q, d in pairs], dtype=torch.long)
        self._keys = torch.unique(keys)  # sorted
        self._on_device: dict[torch.device, Tensor] = {}

    def __len__(self) -> int:
        return int(self._keys.numel())

    def keys_on(self, device: torch.device) -> Tensor:
        if device not in self._on_device:
            self._on_device[device] = self._keys.to(device)
        return self._on_device[device]

    def to_mapping(self) -> dict[int, set[int]]:
        """The pairs back as ``{query_idx: {doc_idx, ...}}`` (e.g. to merge them with more pairs)."""
        mapping: dict[int, set[int]] = {}
        for key in self._keys.tolist():
            query, doc = divmod(key, self.stride)
            mapping.setdefault(query, set()).add(doc)
        return mapping

    def contains(self, query_idx: Tensor, doc_idx: Tensor) -> Tensor:
        """Bool[len(query_idx), len(doc_idx)]: True where ``doc_idx[j]`` is a known positive of ``query_idx[i]``."""
        rows, cols = query_idx.reshape(-1, 1).long(), doc_idx.reshape(1, -1).long()
        if len(self) == 0:
            return torch.zeros(rows.size(0), cols.size(1), dtype=torch.bool, device=query_idx.device)
        keys = self.keys_on(query_idx.device)
        wanted = rows * self.stride + cols
        position = torch.searchsorted(keys, wanted).clamp_(max=keys.numel() - 1)
        valid = (rows >= 0) & (cols >= 0) & (cols < self.stride)
        return (keys[position] == wanted) & valid


def as_positive_pairs(positives: Mapping[int, Iterable[int]] | PositivePairs | None) -> PositivePairs | None:
    """Accept the plain dict form or a prebuilt :class:`PositivePairs` (built once, reused every step)."""
    if positives is None or isinstance(positives, PositivePairs):
        return positives
    return PositivePairs(positives)


def known_positive_mask(
    query_idx: Tensor,
    candidate_doc_idx: Tensor,
    positives: Mapping[int, Iterable[int]] | PositivePairs | None,
    targets: Tensor,
) -> Tensor:
    """Bool[B, C]: True where candidate ``j`` is a known positive of query ``i`` other than its target.

    "Known positive" means listed in ``positives`` for that query, or the very document of the
    query's target appearing again in another column (a duplicate of its own positive). The
    target column itself is never masked. These are the false negatives of in-batch training: a
    batch-mate's positive that is also relevant to this query, or a mined negative that is in fact
    labelled relevant.
    """
    rows = torch.arange(query_idx.numel(), device=query_idx.device)
    candidate_doc_idx = candidate_doc_idx.to(query_idx.device)
    target_doc = candidate_doc_idx[targets]
    mask = (candidate_doc_idx.reshape(1, -1) == target_doc.reshape(-1, 1)) & (target_doc.reshape(-1, 1) >= 0)
    pairs = as_positive_pairs(positives)
    if pairs is not None:
        mask |= pairs.contains(query_idx, candidate_doc_idx)
    mask[rows, targets] = False
    return mask


def info_nce_from_scores(
    scores: Tensor,
    targets: Tensor,
    mask: Tensor | None = None,
    temperature: float | Tensor = 0.05,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""InfoNCE: cross-entropy of each row's target among its unmasked candidates.

    .. math::

        \mathcal{L} = -\frac{1}{B}\sum_i \log
        \frac{\exp(s_{i,t_i}/\tau)}{\sum_{j \notin M_i} \exp(s_{i,j}/\tau)}

    with ``s`` the similarity scores, ``t_i`` the target column, ``tau`` the temperature and
    ``M_i`` the masked candidates of row ``i`` (their logits become ``-inf``: they neither count
    as negatives nor receive gradient). The target may never be masked.

    Statistics (detached 0-d tensors):

    * ``accuracy``: share of rows whose highest-scoring candidate is the target;
    * ``n_candidates``: mean number of unmasked candidates per row (``N``);
    * ``mi_lower_bound``: ``mean_i log N_i - loss``, the InfoNCE lower bound on the mutual
      information between query and positive (van den Oord et al. 2018, "Representation
      Learning with Contrastive Predictive Coding", arXiv:1807.03748; Poole et al. 2019, "On
      Variational Bounds of Mutual Information"). It is ~0 for an untrained model and can never
      exceed ``log N``, which is why more negatives allow a tighter bound.

    A float temperature is applied as a multiplication by ``1 / temperature`` (like
    sentence-transformers' ``scale``), a tensor one as a division (so it can be learnt).
    """
    if scores.dim() != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [B, C] and targets [B]; got {tuple(scores.shape)} and {tuple(targets.shape)}")
    logits = scores * (1.0 / temperature) if isinstance(temperature, (int, float)) else scores / temperature
    rows = torch.arange(scores.size(0), device=scores.device)
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from scores {tuple(scores.shape)}")
        assert not bool(mask[rows, targets].any()), "a target candidate is masked: its query would have no positive"
        logits = logits.masked_fill(mask, float("-inf"))
    loss = F.cross_entropy(logits, targets)
    with torch.no_grad():
        if mask is None:
            n_candidates = torch.full((scores.size(0),), float(scores.size(1)), device=scores.device)
        else:
            n_candidates = (~mask).sum(dim=1).to(scores.dtype)
        stats = {
            "accuracy": (logits.argmax(dim=1) == targets).float().mean(),
            "n_candidates": n_candidates.mean(),
            "mi_lower_bound": n_candidates.log().mean() - loss.detach(),
        }
    return loss, stats



def candidate_mask(ids: Tensor | None, positives: Mapping[int, Iterable[int]] | PositivePairs | None) -> Tensor | None:
    """The known-positive mask of a single-process batch, or None without ids.

    Layout shared by NCE, SigLIP and triplet: row ``i`` of ``ids`` is ``[query_idx, pos_doc_idx,
    neg_doc_idx...]``, the candidates are the document columns concatenated column-major (all
    positives, then all ``negative_1``, ...), so the target of row ``i`` is candidate ``i``.
    """
    if ids is None:
        return None
    targets = torch.arange(ids.size(0), device=ids.device)
    return known_positive_mask(ids[:, 0], ids[:, 1:].T.reshape(-1), positives, targets)


class BatchLossMixin:
    """Label handling and statistics of a loss with :class:`~finetune.losses.info_nce.InfoNCE`'s contract.

    Needs ``mask_known_positives`` and ``positives`` attributes. ``last_stats`` holds the last
    step's statistics as floats (read by :class:`finetune.stats_trainer.StatsTrainer`).
    """

    mask_known_positives: bool

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """The sentence-transformers loss contract: embed every column, then :meth:`loss_from_embeddings`."""
        embeddings = embed_columns(self.model, list(sentence_features))
        loss, stats = self.loss_from_embeddings(embeddings, labels)
        self.record_stats(loss, stats)
        return loss
    positives: PositivePairs | None
    last_stats: dict[str, float] = {}
    _stats_sum: dict[str, float] = {}
    _stats_steps: int = 0
    _warned_no_ids: bool = False

    def _batch_ids(self, labels: Tensor | None, n_columns: int, batch_size: int, device: torch.device) -> Tensor | None:
        """The ``[B, 1 + n_docs]`` id matrix when masking is on and the labels carry ids, else None."""
        name = type(self).__name__
        if not self.mask_known_positives:
            return None
        if labels is None or labels.dim() != 2:
            if self.positives is not None and not self._warned_no_ids:
                logger.warning("%s got positives but no [query_idx, doc_idx...] labels: nothing is masked", name)
                self._warned_no_ids = True
            return None
        if labels.shape != (batch_size, n_columns):
            raise ValueError(
                f"{name} labels must be [batch, 1 + number of text columns] = [{batch_size}, {n_columns}] "
                f"(query_idx, positive_doc_idx, negative_doc_idx...), got {list(labels.shape)}"
            )
        return labels.to(device=device, dtype=torch.long)

    def record_stats(self, loss: Tensor, stats: Mapping[str, Tensor]) -> None:
        """Keep this step's statistics as floats (``last_stats``) and in the running means of :meth:`consume_stats`."""
        self.last_stats = {"loss": float(loss.detach())} | {key: float(value) for key, value in stats.items()}
        sums = dict(self._stats_sum)  # a new dict: the class-level default is never mutated
        for key, value in self.last_stats.items():
            sums[key] = sums.get(key, 0.0) + value
        self._stats_sum = sums
        self._stats_steps += 1

    def consume_stats(self) -> dict[str, float]:
        """Means of the statistics since the previous call, then reset."""
        means = {key: value / self._stats_steps for key, value in self._stats_sum.items()} if self._stats_steps else {}
        self._stats_sum, self._stats_steps = {}, 0
        return means
