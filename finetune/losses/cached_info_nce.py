"""InfoNCE with gradient caching: large batches (many negatives) in the memory of a small one.

GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup", arXiv:2101.06983), through sentence-transformers' own ``CachedLossMixin`` (the
machinery of ``CachedMultipleNegativesRankingLoss``, RNG replay included): (1) embed every
column in mini-batches without a graph, (2) compute :class:`InfoNCE` on the full batch and
back-propagate to the embeddings only, caching their gradients, (3) in the backward pass,
re-embed each mini-batch with a graph, replaying the RNG state of step (1) so that dropout
draws the same masks, and back-propagate the cached gradients. Loss and gradients equal
:class:`InfoNCE`'s on the same batch.

Shortcut taken on purpose: the score matrix of step (2) is computed in one piece
(``B x B(1+n)`` floats, 64 MB for B = 2048 with one negative), not chunked by rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import CachedLossMixin, _validate_mini_batch_num_tokens
from torch import Tensor, nn

from finetune.losses.core import PositivePairs
from finetune.losses.info_nce import InfoNCE

CITATION = """
@inproceedings{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    booktitle={Proceedings of the 6th Workshop on Representation Learning for NLP},
    year={2021},
    url={https://arxiv.org/abs/2101.06983},
}
"""


def _apply_parameter_gradients(grad_output: Tensor, pending: list[tuple[nn.Parameter, Tensor]]) -> None:
    """Backward hook: add the loss's own parameter gradients, scaled like every other gradient.

    ``grad_output`` carries the gradient-accumulation division and the fp16 loss scale; step (2)
    ran without them, so a learnable temperature would otherwise get an unscaled gradient.
    """
    for parameter, grad in pending:
        grad = grad * grad_output
        parameter.grad = grad if parameter.grad is None else parameter.grad + grad


class CachedInfoNCE(CachedLossMixin, nn.Module):
    """:class:`InfoNCE` computed with GradCache; same options plus ``mini_batch_size``.

    Inputs and labels as for :class:`InfoNCE`. ``mini_batch_size`` bounds how many texts of a
    column go through the model at once, so memory no longer grows with the batch size (the
    number of in-batch negatives); the price is a second forward pass.
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
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        _validate_mini_batch_num_tokens(mini_batch_num_tokens)
        self.model = model
        self.loss = InfoNCE(model, temperature, learnable_temperature, symmetric, positives,
                            mask_known_positives, gather_across_processes)
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar
        self._pending: list[tuple[nn.Parameter, Tensor]] = []

    @property
    def temperature(self) -> float:
        return self.loss.temperature

    @property
    def last_stats(self) -> dict[str, float]:
        return self.loss.last_stats

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False) -> Tensor:
        """Step (2): the full-batch loss; with ``with_backward``, embedding gradients land in ``rep.grad``."""
        loss, stats = self.loss.loss_from_embeddings([torch.cat(column) for column in reps], labels)
        self.loss.record_stats(loss, stats)
        if not with_backward:
            return loss
        leaves = [rep for column in reps for rep in column]
        parameters = [p for p in self.loss.parameters(recurse=False) if p.requires_grad]
        grads = torch.autograd.grad(loss, leaves + parameters, allow_unused=True)
        for rep, grad in zip(leaves, grads):
            rep.grad = grad
        self._pending = [(p, g) for p, g in zip(parameters, grads[len(leaves):]) if g is not None]
        return loss.detach()

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) < 2:
            raise ValueError(f"CachedInfoNCE needs at least (query, positive) columns, got {len(sentence_features)}")
        self._pending = []
        loss = self.forward_cached(sentence_features, labels)
        if self._pending and loss.requires_grad:
            loss.register_hook(partial(_apply_parameter_gradients, pending=self._pending))
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return self.loss.get_config_dict() | {"mini_batch_size": self.mini_batch_size,
                                              "mini_batch_num_tokens": self.mini_batch_num_tokens}

    @property
    def citation(self) -> str:
        return self.loss.citation + CITATION
