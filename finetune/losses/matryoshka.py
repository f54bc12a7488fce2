"""Matryoshka training: the loss on the first ``d`` dimensions of every embedding, for several ``d``.

Kusupati et al. 2022 ("Matryoshka Representation Learning", arXiv:2205.13147): the sum over
``d in D`` of the chosen loss on the embeddings truncated to their first ``d`` coordinates (and
renormalised) makes every prefix a usable embedding, so an index can be built at a fraction of
the width (``retrieval index build --dim d``) with the loss of quality measured on that width
rather than that of a cut that was never trained.

The wrapping itself is sentence-transformers' ``MatryoshkaLoss``: it patches the model's
``forward`` for the duration of the loss so that the inner loss, called once per width, sees
truncated embeddings (one encoder pass, cached); for the GradCache losses it decorates
``calculate_loss`` instead. Our losses embed through ``model(features)`` (``embed_columns``) and
take the ``[query_idx, doc_idx...]`` labels unchanged, so they need no change;
:class:`Matryoshka` only adds per-width statistics for the trainer's logs, and
:func:`write_record` / :func:`read_record` keep the trained widths beside the exported model
(``matryoshka.json``) so that indexing at an untrained width can be refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from torch import Tensor, nn

RECORD_FILE = "matryoshka.json"


class Matryoshka(MatryoshkaLoss):
    r"""sentence-transformers' ``MatryoshkaLoss`` around one of our losses, with per-width statistics.

    .. math:: \mathcal{L} = \sum_{d \in D} w_d \, \mathcal{L}_{\text{inner}}\big(
              \operatorname{norm}(e_{1..d}) \text{ for every embedding } e\big)

    with ``w_d = 1`` by default. ``last_stats`` (read by :class:`finetune.stats_trainer.StatsTrainer`)
    holds the inner loss's statistics at the full (largest) width under their usual names, plus
    ``loss@d`` and ``accuracy@d`` (when the inner loss reports an accuracy) for every width.

    Inputs (those of the inner loss; here for every loss of the family):
        +--------------------------------------------------+-------------------------------------------------+
        | Texts                                            | Labels                                          |
        +==================================================+=================================================+
        | (query, positive, negative_1, ..., negative_n)   | ``[query_idx, pos_doc_idx, neg_1_doc_idx, ...]`` |
        +--------------------------------------------------+-------------------------------------------------+

    Args:
        model: the SentenceTransformer being trained.
        loss: the inner loss (InfoNCE, NCE, SigLIP, triplet, CachedInfoNCE, QueueInfoNCE).
        matryoshka_dims: the widths ``D``, each at most the model's embedding dimension.
        matryoshka_weights: ``w_d`` (default all 1).

    References: Kusupati et al. 2022 (arXiv:2205.13147); sentence-transformers'
    ``MatryoshkaLoss``.

    Example::

        loss = Matryoshka(model, InfoNCE(model, positives=positives), [384, 256, 128, 64])
        trainer = SentenceTransformerTrainer(model=model, train_dataset=rows, loss=loss)
        write_record(output_folder, loss.matryoshka_dims)  # after model.save(output_folder)
    """

    def __init__(self, model: nn.Module, loss: nn.Module, matryoshka_dims: Sequence[int],
                 matryoshka_weights: Sequence[float] | None = None) -> None:
        super().__init__(model, loss, matryoshka_dims, matryoshka_weights)
        self.last_stats: dict[str, float] = {}
        self._recorded: list[dict[str, float]] = []
        owner = _stats_owner(loss)  # not kept as an attribute: nn.Module would register it a second time
        if owner is not None:
            original = owner.record_stats

            def record_stats(value: Tensor, stats) -> None:
                original(value, stats)
                self._recorded.append(dict(owner.last_stats))

            owner.record_stats = record_stats  # an instance attribute: the class stays untouched

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        self._recorded = []
        loss = super().forward(sentence_features, labels)
        per_width = self._recorded if len(self._recorded) == len(self.matryoshka_dims) else []
        stats = dict(per_width[0]) if per_width else dict(getattr(self.loss, "last_stats", {}) or {})
        for dim, recorded in zip(self.matryoshka_dims, per_width):
            stats[f"loss@{dim}"] = recorded.get("loss", float("nan"))
            if "accuracy" in recorded:
                stats[f"accuracy@{dim}"] = recorded["accuracy"]
        stats["loss"] = float(loss.detach())
        self.last_stats = stats
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        inner = getattr(self.loss, "get_config_dict", lambda: {})()
        return super().get_config_dict() | {"inner": inner}


def _stats_owner(loss: nn.Module):
    """The loss object whose ``record_stats`` runs once per inner call (CachedInfoNCE delegates to its ``.loss``)."""
    for candidate in (loss, getattr(loss, "loss", None)):
        if candidate is not None and callable(getattr(candidate, "record_stats", None)):
            return candidate
    return None


def matryoshka_loss(model: nn.Module, loss: nn.Module, dims: Sequence[int]) -> Matryoshka:
    """:class:`Matryoshka` around ``loss``; a width the model cannot give is a UsageError (one line)."""
    from retrieval.errors import UsageError

    try:
        return Matryoshka(model, loss, list(dims))
    except ValueError as err:
        raise UsageError(f"--matryoshka-dims {','.join(map(str, dims))}: {err}") from None


def write_record(model_dir: str | Path, dims: Sequence[int], embedding_dim: int | None = None) -> Path:
    """Write ``matryoshka.json`` (the trained widths, largest first) into an exported model folder."""
    from index.atomic import write_text

    path = Path(model_dir) / RECORD_FILE
    record = {"matryoshka_dims": sorted({int(d) for d in dims}, reverse=True),
              "reference": "Kusupati et al. 2022, arXiv:2205.13147"}
    if embedding_dim is not None:
        record["embedding_dim"] = int(embedding_dim)
    write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_record(model: str | Path) -> list[int] | None:
    """The widths a model folder was Matryoshka-trained for, or None without a (readable) record.

    ``model`` is a folder or a name; names of packaged models resolve to their folder, hub names
    have no record here (None).
    """
    from retrieval.models import resolve_model_path

    path = Path(resolve_model_path(str(model))).expanduser() / RECORD_FILE
    try:
        dims = json.loads(path.read_text(encoding="utf-8"))["matryoshka_dims"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        return None
    return dims
