"""Triplet loss with a margin on cosine distance, over each row's own mined negatives.

With one negative and nothing masked it is exactly sentence-transformers'
``TripletLoss(model, distance_metric=TripletDistanceMetric.COSINE, triplet_margin=margin)``; it
adds several negatives per row and the false-negative mask of the family: a mined negative that
is labelled relevant to its query does not form a triplet.

Mode full only (``--loss triplet --mode query`` is refused): query mode's loss is
:class:`~finetune.losses.frozen_corpus.FrozenCorpusInfoNCE` over the whole frozen corpus; a
triplet needs only the mined negatives, so it could run against frozen document vectors too,
but that variant is not built (the default recipe is mode full).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finetune.losses.core import BatchLossMixin, PositivePairs, as_positive_pairs, candidate_mask
from finetune.losses.info_nce import cosine_scores

CITATION = """
@inproceedings{schroff2015facenet,
    title={FaceNet: A Unified Embedding for Face Recognition and Clustering},
    author={Florian Schroff and Dmitry Kalenichenko and James Philbin},
    booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
    pages={815--823},
    year={2015},
    url={https://arxiv.org/abs/1503.03832},
}
"""


def triplet_from_scores(
    scores: Tensor, targets: Tensor, negatives: Tensor, mask: Tensor | None = None, margin: float = 0.1
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Mean hinge ``max(0, d(q_i, d_{t_i}) - d(q_i, d_j) + margin)`` over the selected pairs, ``d = 1 - s``.

    ``negatives`` (bool ``[B, C]``) selects the triplets' negatives ``j`` of each row; masked
    pairs are dropped from the selection (exactly zero gradient) and from the mean's divisor.
    """
    if scores.dim() != 2 or targets.shape != scores.shape[:1] or negatives.shape != scores.shape:
        raise ValueError(f"scores and negatives must be [B, C] and targets [B]; got {tuple(scores.shape)}, "
                         f"{tuple(negatives.shape)} and {tuple(targets.shape)}")
    rows = torch.arange(scores.size(0), device=scores.device)
    valid = negatives.clone()
    valid[rows, targets] = False
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from scores {tuple(scores.shape)}")
        valid &= ~mask
    distance = 1.0 - scores
    hinge = F.relu(distance[rows, targets].unsqueeze(1) - distance + margin)
    count = valid.sum()
    loss = hinge.masked_fill(~valid, 0.0).sum() / count.clamp(min=1)
    with torch.no_grad():
        share = float(count.clamp(min=1))
        stats = {
            "accuracy": ((distance < distance[rows, targets].unsqueeze(1)) & valid).sum() / share,
            "active_triplets": ((hinge > 0) & valid).sum() / share,
            "triplets_per_row": count.to(scores.dtype) / scores.size(0),
        }
    return loss, stats


class Triplet(BatchLossMixin, nn.Module):
    r"""Triplet loss with margin on cosine distance, over each row's mined negatives, masking known positives.

    For row ``i`` of a batch with columns ``(query, positive, negative_1..n)``:

    .. math:: \mathcal{L} = \frac{1}{|T|}\sum_{(i,k) \in T}
              \max\big(0,\; d(q_i, p_i) - d(q_i, n_{ik}) + m\big), \qquad d(x, y) = 1 - \cos(x, y)

    where ``T`` are the pairs of a row and one of its own mined negatives ``n_ik`` that is not
    known to be relevant to ``q_i``: in-batch negatives (the other rows' documents) are *not*
    used, matching sentence-transformers' ``TripletLoss`` and FaceNet's triplets. The one
    exception is a batch without negative columns (the rows whose mining was starved by the
    false-negative filter): there each row's negatives are the other rows' positives, so those
    rows still train. A masked negative is left out of ``T`` and gets exactly zero gradient.
    No cross-process gathering is needed (or done): every triplet lives in one row.

    Margin: the default 0.1 is FaceNet's ``alpha = 0.2`` on the squared Euclidean distance of
    unit vectors, ``||x - y||^2 = 2 (1 - cos)``, expressed in cosine distance.
    sentence-transformers' default of 5 is for unnormalised Euclidean distance; on cosine
    distance (range [0, 2]) anything >= 2 would keep every triplet active forever.

    Inputs:
        +--------------------------------------------------+-------------------------------------------------+
        | Texts                                            | Labels                                          |
        +==================================================+=================================================+
        | (query, positive, negative_1, ..., negative_n)   | ``[query_idx, pos_doc_idx, neg_1_doc_idx, ...]`` |
        +--------------------------------------------------+-------------------------------------------------+

    Args:
        model: the SentenceTransformer being trained.
        margin: ``m``, in cosine distance.
        positives: ``{query_idx: {doc_idx, ...}}`` of all known positives (or a :class:`PositivePairs`).
        mask_known_positives: drop triplets whose negative is a known positive of the query.

    References: Schroff et al. 2015, "FaceNet" (arXiv:1503.03832); Hermans et al. 2017, "In
    Defense of the Triplet Loss for Person Re-Identification" (arXiv:1703.07737).

    Example::

        loss = Triplet(model, margin=0.1, positives={0: {3, 7}, 1: {4}})
        trainer = SentenceTransformerTrainer(model=model, train_dataset=rows, loss=loss)
    """

    def __init__(
        self,
        model: nn.Module,
        margin: float = 0.1,
        positives: Mapping[int, Iterable[int]] | PositivePairs | None = None,
        mask_known_positives: bool = True,
    ) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError("margin must be >= 0")
        self.model = model
        self.margin = float(margin)
        self.positives = as_positive_pairs(positives)
        self.mask_known_positives = mask_known_positives

    def loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one batch from its column embeddings ``[queries, positives, negatives_1..n]``."""
        if len(embeddings) < 2:
            raise ValueError(f"Triplet needs at least (query, positive) columns, got {len(embeddings)}")
        queries, candidates = embeddings[0], torch.cat(embeddings[1:], dim=0)
        batch_size, device = queries.size(0), queries.device
        ids = self._batch_ids(labels, len(embeddings), batch_size, device)
        targets = torch.arange(batch_size, device=device)
        column = torch.arange(candidates.size(0), device=device)
        owner, kind = column % batch_size, column // batch_size  # candidates are column-major
        if len(embeddings) > 2:  # the row's own mined negatives
            negatives = (owner.unsqueeze(0) == targets.unsqueeze(1)) & (kind >= 1).unsqueeze(0)
        else:  # no negative column: the other rows' positives
            negatives = (owner.unsqueeze(0) != targets.unsqueeze(1)) & (kind == 0).unsqueeze(0)
        scores = cosine_scores(queries, candidates)
        return triplet_from_scores(scores, targets, negatives, candidate_mask(ids, self.positives), self.margin)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "distance_metric": "cosine",
            "margin": self.margin,
            "mask_known_positives": self.mask_known_positives,
            "known_positive_pairs": len(self.positives) if self.positives is not None else 0,
        }

    @property
    def citation(self) -> str:
        return CITATION
