"""InfoNCE of each query against the whole corpus, whose embeddings stay frozen.

Query-side fine-tuning: the document encoder and its index are the base model's,
left untouched; only the query encoder learns. Every document of the corpus is
a candidate, so each query sees N-1 negatives at the cost of one matrix product
with the cached document embeddings (the base index's ``embeddings.npy``), and
after training there is nothing to re-encode. The objective is the same InfoNCE
as :class:`~finetune.losses.info_nce.InfoNCE` with the candidate set taken to
its limit; false negatives are handled by masking: every other known positive of
the query, plus the documents the mining step flagged as suspects (scored by the
base model above ``margin x`` the positive, the NV-Retriever rule).

With ``num_negatives=K`` each query sees its positive and K negatives drawn at random (afresh
every step, uniformly, without replacement) from the documents that are neither its known
positives nor masked, instead of the whole corpus: the frozen corpus makes the effect of K on
the loss, on the bound ``log(K+1) - L`` and on retrieval cheap to measure at a fixed budget
(``bench/negatives_k.py``). ``None`` (default): every allowed document, ``K = N - 1 - masked``.

Inputs:

+-------------------------------+-------------------------------------------+
| Texts                         | Labels                                    |
+===============================+===========================================+
| (query)                       | ``[query_idx, positive_doc_idx]`` (long)  |
+-------------------------------+-------------------------------------------+

Reference: asymmetric/query-side tuning with a fixed document index follows the
"frozen document encoder" setups of e.g. DensePhrases (Lee et al., 2021) and LiT
(Zhai et al., 2022, locked-image tuning).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finetune.losses.core import PositivePairs, info_nce_from_scores


class FrozenCorpusInfoNCE(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        documents: Tensor,
        positives: Mapping[int, Iterable[int]] | PositivePairs,
        masked: Mapping[int, Iterable[int]] | None = None,
        temperature: float = 0.05,
        num_negatives: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """``documents``: [N, d] L2-normalised embeddings, row = doc index; ``positives``/``masked``:
        ``{query_idx: doc indices}`` never counted as negatives of that query (the target excepted).
        ``positives`` may be a prebuilt :class:`PositivePairs`; ``masked`` is added to it either way.

        The documents are kept detached (sharing the caller's storage, no copy): they are frozen by
        construction and never receive gradient, even from a tensor that requires it.

        ``num_negatives``: K sampled negatives per query and step (module docstring); ``generator``
        seeds the draw."""
        super().__init__()
        self.model = model
        self.register_buffer("documents", documents.detach().float(), persistent=False)
        self.temperature = float(temperature)
        combined: dict[int, set[int]] = {}
        known = positives.to_mapping() if isinstance(positives, PositivePairs) else positives
        for source in (known, masked or {}):
            for q, docs in source.items():
                combined.setdefault(int(q), set()).update(int(d) for d in docs)
        self.excluded = PositivePairs(combined)
        if num_negatives is not None and num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1 (or None for the whole corpus), got {num_negatives}")
        self.num_negatives = num_negatives
        self.generator = generator
        self.last_stats: dict[str, float] = {}

    def forward(self, sentence_features: list[dict[str, Tensor]], labels: Tensor) -> Tensor:
        queries = self.model(sentence_features[0])["sentence_embedding"]
        queries = F.normalize(queries.float(), dim=-1)
        documents = self.documents.to(queries.device)
        scores = queries @ documents.T
        query_idx, targets = labels[:, 0].to(queries.device), labels[:, 1].to(queries.device)
        all_docs = torch.arange(documents.size(0), device=queries.device)
        mask = self.excluded.contains(query_idx, all_docs)
        rows = torch.arange(len(targets), device=queries.device)
        mask[rows, targets] = True  # the target is never drawn as one of its own negatives
        if self.num_negatives is not None:
            mask = sample_negatives(mask, self.num_negatives, self.generator)
        mask[rows, targets] = False
        loss, stats = info_nce_from_scores(scores, targets, mask, self.temperature)
        self.last_stats = {"loss": float(loss.detach()), **{k: float(v) for k, v in stats.items()},
                           "temperature": self.temperature}
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "documents": int(self.documents.size(0)),
                "excluded_pairs": len(self.excluded), "num_negatives": self.num_negatives}

    @property
    def citation(self) -> str:
        return """
@misc{oord2018cpc,
    title={Representation Learning with Contrastive Predictive Coding},
    author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
    year={2018}, eprint={1807.03748}, archivePrefix={arXiv}
}
"""


def sample_negatives(excluded: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """A mask leaving, in each row, ``k`` distinct candidates drawn uniformly among the ``False`` ones of ``excluded``.

    ``excluded``: [B, N] bool, True where a document may not be a negative (known positives,
    masked suspects, the target). A row with fewer than ``k`` allowed documents keeps them all.
    Returns a new [B, N] mask: True everywhere but the drawn negatives.
    """
    noise = torch.rand(excluded.shape, generator=generator, device="cpu").to(excluded.device)
    noise = noise.masked_fill(excluded, float("inf"))  # never drawn
    k = min(k, excluded.size(1))
    drawn = noise.topk(k, dim=1, largest=False).indices
    keep = torch.zeros_like(excluded)
    keep.scatter_(1, drawn, True)
    return ~(keep & ~excluded)


try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
    TrainerCallback = object


class ReseedEachStep(TrainerCallback):
    """Seed ``generator`` with ``seed + global_step`` before every step.

    The K negatives of a step are then a function of (seed, step) alone, so a run resumed
    from a checkpoint draws what the uninterrupted run would have, instead of replaying the
    first steps' draws.
    """

    def __init__(self, generator: torch.Generator, seed: int) -> None:
        self.generator, self.seed = generator, int(seed)

    def on_step_begin(self, args, state, control, **kwargs):
        self.generator.manual_seed(self.seed + int(state.global_step))
