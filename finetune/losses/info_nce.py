"""InfoNCE with in-batch and hard negatives, false-negative masking and cross-process candidates.

The sentence-transformers loss contract (``forward(sentence_features, labels) -> Tensor``), so it
plugs into ``SentenceTransformerTrainer(loss=...)``. With masking off and one direction it is
exactly ``MultipleNegativesRankingLoss``; what it adds is the guard against the false negatives
that make naive fine-tuning worse: document ids travel with the batch in the ``label`` column,
and a candidate that is a *known* positive of the query (a batch-mate's positive that is also
relevant to it, a mined negative that is labelled relevant) is removed from its softmax.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from finetune.distributed import average_gradient_hook, gather_no_grad, gather_with_grad, is_multi_process, world
from finetune.losses.core import (  # noqa: F401 - embed_columns re-exported for the other losses
    BatchLossMixin, PositivePairs, as_positive_pairs, embed_columns, info_nce_from_scores, known_positive_mask,
)

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 1.0  # clamp of a learnt temperature (CLIP caps 1/tau at 100)

CITATION = """
@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019},
      eprint={1807.03748},
      archivePrefix={arXiv},
      primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}
"""


def cosine_scores(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity matrix, as ``sentence_transformers.util.cos_sim`` computes it, but in fp32.

    Under bf16 autocast a bf16 cosine is off by ~1e-2, i.e. ~0.2 in a logit at temperature 0.05;
    the matrix is small next to the encoder, so it is computed in full precision.
    """
    with torch.autocast(a.device.type, enabled=False):
        a, b = nn.functional.normalize(a.float(), p=2, dim=1), nn.functional.normalize(b.float(), p=2, dim=1)
        return a @ b.T


class InfoNCE(BatchLossMixin, nn.Module):
    r"""InfoNCE over in-batch positives and hard negatives, masking known positives.

    For query ``q_i`` of a batch of ``B`` rows with columns ``(query, positive, negative_1..n)``,
    the candidates are all ``B * (1 + n)`` documents of the batch (of every process when
    distributed), and

    .. math:: \mathcal{L}_i = -\log \frac{\exp(\cos(q_i, p_i)/\tau)}
              {\sum_{j \notin M_i} \exp(\cos(q_i, d_j)/\tau)}

    where ``M_i`` are the candidates known to be relevant to ``q_i`` (other than ``p_i``).
    ``symmetric=True`` averages in the doc->query term (each positive against all queries), as
    ``MultipleNegativesSymmetricRankingLoss`` does.

    Inputs:
        +--------------------------------------------------+-------------------------------------------------+
        | Texts                                            | Labels                                          |
        +==================================================+=================================================+
        | (query, positive, negative_1, ..., negative_n)   | ``[query_idx, pos_doc_idx, neg_1_doc_idx, ...]`` |
        +--------------------------------------------------+-------------------------------------------------+

    Labels are optional; without them (or without ``positives``) only exact duplicates of a
    query's own positive can be recognised, and with no labels nothing is masked.

    Args:
        model: the SentenceTransformer being trained.
        temperature: ``tau`` (0.05 = sentence-transformers' ``scale=20``).
        learnable_temperature: learn ``log tau`` as a parameter, clamped to [0.01, 1].
        symmetric: add the doc->query term.
        positives: ``{query_idx: {doc_idx, ...}}`` of all known positives (or a :class:`PositivePairs`).
        mask_known_positives: remove known positives from each query's candidates.
        gather_across_processes: under ``torchrun``, use every process's documents as candidates.

    References: van den Oord et al. 2018 (arXiv:1807.03748); Karpukhin et al. 2020 (DPR,
    in-batch negatives); Moreira et al. 2024 (NV-Retriever, false negatives in mined sets).

    Example::

        loss = InfoNCE(model, positives={0: {3, 7}, 1: {4}})
        trainer = SentenceTransformerTrainer(model=model, train_dataset=rows, loss=loss)
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        learnable_temperature: bool = False,
        symmetric: bool = False,
        positives: Mapping[int, set[int]] | PositivePairs | None = None,
        mask_known_positives: bool = True,
        gather_across_processes: bool = True,
    ) -> None:
        super().__init__()
        if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE and learnable_temperature:
            raise ValueError(f"a learnable temperature must start in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}]")
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        self.model = model
        self.symmetric = symmetric
        self.mask_known_positives = mask_known_positives
        self.gather_across_processes = gather_across_processes
        self.positives = as_positive_pairs(positives)
        self.learnable_temperature = learnable_temperature
        self._temperature = float(temperature)
        if learnable_temperature:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
            self.log_temperature.register_hook(average_gradient_hook)

    @property
    def temperature(self) -> float:
        return float(torch.as_tensor(self.current_temperature()).detach())

    def current_temperature(self) -> float | Tensor:
        if not self.learnable_temperature:
            return self._temperature
        return self.log_temperature.exp().clamp(MIN_TEMPERATURE, MAX_TEMPERATURE)

    def loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one batch from its column embeddings ``[queries, positives, negatives_1..n]``."""
        if len(embeddings) < 2:
            raise ValueError(f"InfoNCE needs at least (query, positive) columns, got {len(embeddings)}")
        queries, docs = embeddings[0], list(embeddings[1:])
        batch_size = queries.size(0)
        ids = self._batch_ids(labels, len(embeddings), batch_size, queries.device)
        offset = 0
        all_queries = queries
        if self.gather_across_processes and is_multi_process():
            all_queries = gather_with_grad(queries)
            docs = [gather_with_grad(column) for column in docs]
            ids = gather_no_grad(ids) if ids is not None else None
            offset = world()[0] * batch_size
        global_batch = docs[0].size(0)
        targets = torch.arange(offset, offset + batch_size, device=queries.device)
        candidates = torch.cat(docs, dim=0)  # column-major: all positives, then all negative_1, ...
        temperature = self.current_temperature()

        mask = None
        if ids is not None:
            candidate_docs = ids[:, 1:].T.reshape(-1)
            mask = known_positive_mask(ids[targets, 0], candidate_docs, self.positives, targets)
        loss, stats = info_nce_from_scores(cosine_scores(queries, candidates), targets, mask, temperature)

        if self.symmetric:
            reverse_mask = None
            if ids is not None:  # query j is a false candidate for doc i if doc i is known relevant to it
                reverse_mask = ids[:, 0].reshape(1, -1) == ids[targets, 0].reshape(-1, 1)
                if self.positives is not None:
                    reverse_mask |= self.positives.contains(ids[:, 0], ids[targets, 1]).T
                reverse_mask[torch.arange(batch_size, device=queries.device), targets] = False
            reverse, _ = info_nce_from_scores(cosine_scores(docs[0][targets], all_queries), targets, reverse_mask, temperature)
            loss = (loss + reverse) / 2
        stats["temperature"] = torch.as_tensor(temperature).detach().float()
        stats["global_batch"] = torch.tensor(float(global_batch))
        return loss, stats

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self._temperature,
            "learnable_temperature": self.learnable_temperature,
            "symmetric": self.symmetric,
            "mask_known_positives": self.mask_known_positives,
            "known_positive_pairs": len(self.positives) if self.positives is not None else 0,
            "gather_across_processes": self.gather_across_processes,
        }

    @property
    def citation(self) -> str:
        return CITATION
