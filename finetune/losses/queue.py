"""InfoNCE with a FIFO queue of earlier batches' documents as extra negatives (MoCo-style).

The number of negatives ``K`` of in-batch InfoNCE is tied to the batch size, and so to memory.
A queue decouples them (He et al. 2019, "Momentum Contrast for Unsupervised Visual
Representation Learning", arXiv:1911.05722; the "memory bank" of Wu et al. 2018,
arXiv:1805.01978): the document embeddings of the last batches (positives and mined negatives),
up to ``queue_size`` rows, are kept detached and join every query's candidates. They cost one
``B x queue_size`` score matrix and no forward pass. Each queued row keeps its document id (from
the ``label`` column), so a queued document that is a known positive of a query (listed in
``positives``, or the very document of the query's own positive) is masked exactly like an
in-batch known positive. The queue is filled *after* the loss of a step is computed, so a batch
never sees its own documents twice.

With ``momentum = 0`` (the default) the queue holds the online encoder's own detached
embeddings, a memory bank: queued vectors come from slightly older weights, harmless for the
few steps a small queue spans at fine-tuning learning rates. With ``momentum = m > 0`` a copy of
the encoder, ``theta_k <- m theta_k + (1 - m) theta_q`` after every optimizer step
(:class:`finetune.loss_callbacks.MomentumUpdate`, a trainer callback), embeds the documents that are enqueued, so that
the queue stays consistent over many steps, as in MoCo; it costs a second, gradient-free forward
pass of the document columns and a second copy of the weights.

Limits (refused where they would silently be wrong): single process only (a queue per rank
would hold different documents on each; not implemented under ``torchrun``); not with GradCache
(the cached loss re-embeds in its backward pass); ``momentum > 0`` not with Matryoshka (the
momentum copy would embed once per dimension). The queue and the momentum copy are not part of
the trainer's checkpoints: a resumed run starts with an empty queue and re-synchronises the
momentum copy to the resumed weights (:meth:`QueueInfoNCE.sync_momentum_encoder`).

Under sentence-transformers' ``MatryoshkaLoss`` the inner loss sees each truncated width in
turn; there is one queue per width, so each width's candidates are its own truncated documents.

Measured on fine-tuning (README "The contrastive family and K, measured"; three epochs, seed 42):
neither form beats in-batch InfoNCE with three mined negatives, whose 127 candidates per query
already hold the hard ones. ``queue_size=256``: SciFact -1.7, manual pages -1.1 nDCG@10;
with ``momentum=0.9`` as well: -3.9 and -1.4, and 1.3x the training time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from finetune.distributed import is_multi_process
from finetune.losses.core import PositivePairs, info_nce_from_scores, known_positive_mask
from finetune.losses.embedding_queue import EmbeddingQueue
from finetune.losses.info_nce import CITATION as INFO_NCE_CITATION
from finetune.losses.info_nce import InfoNCE, cosine_scores, embed_columns

CITATION = """
@inproceedings{he2020momentum,
    title={Momentum Contrast for Unsupervised Visual Representation Learning},
    author={Kaiming He and Haoqi Fan and Yuxin Wu and Saining Xie and Ross Girshick},
    booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
    year={2020},
    eprint={1911.05722},
    archivePrefix={arXiv},
    url={https://arxiv.org/abs/1911.05722},
}
"""


class QueueInfoNCE(InfoNCE):
    r""":class:`~finetune.losses.info_nce.InfoNCE` whose candidates include a queue of earlier documents.

    For query ``q_i`` of a batch of ``B`` rows with columns ``(query, positive, negative_1..n)``,
    the candidates are the ``B(1 + n)`` documents of the batch and the ``Q <= queue_size`` queued
    document embeddings ``k_1..k_Q`` of the previous batches (detached), and

    .. math:: \mathcal{L}_i = -\log \frac{\exp(\cos(q_i, p_i)/\tau)}
              {\sum_{j \notin M_i} \exp(\cos(q_i, d_j)/\tau) + \sum_{l \notin M^Q_i} \exp(\cos(q_i, k_l)/\tau)}

    where ``M_i`` / ``M^Q_i`` are the in-batch / queued candidates known to be relevant to ``q_i``
    (listed in ``positives``, or the same document as ``p_i``): their logits are ``-inf``, they are
    no negatives. After the loss, the batch's document columns are pushed onto the queue (FIFO,
    oldest rows dropped beyond ``queue_size``). With an empty queue the loss is exactly
    :class:`InfoNCE`'s. ``symmetric=True`` adds InfoNCE's doc->query term over the batch's
    queries (the queue holds no queries).

    Inputs:
        +--------------------------------------------------+-------------------------------------------------+
        | Texts                                            | Labels                                          |
        +==================================================+=================================================+
        | (query, positive, negative_1, ..., negative_n)   | ``[query_idx, pos_doc_idx, neg_1_doc_idx, ...]`` |
        +--------------------------------------------------+-------------------------------------------------+

    Labels carry the document ids that mask queued known positives; without labels (or with
    ``mask_known_positives=False``) queued documents are never masked.

    Args:
        model: the SentenceTransformer being trained.
        queue_size: most queued document rows (``>= 1``).
        momentum: ``m`` of the momentum encoder that embeds enqueued documents; 0 = the online
            encoder's own detached embeddings (no second encoder). Needs
            :class:`~finetune.loss_callbacks.MomentumUpdate` among the trainer's callbacks
            (:func:`~finetune.loss_callbacks.trainer_callbacks` builds it).
        temperature, learnable_temperature, symmetric, positives, mask_known_positives: as for
            :class:`InfoNCE`. Cross-process gathering is off: a queue is single-process only.

    References: He et al. 2019 (MoCo, arXiv:1911.05722); Wu et al. 2018 (memory bank,
    arXiv:1805.01978); van den Oord et al. 2018 (InfoNCE, arXiv:1807.03748).

    Example::

        from finetune.loss_callbacks import trainer_callbacks

        loss = QueueInfoNCE(model, queue_size=4096, positives={0: {3, 7}, 1: {4}})
        trainer = SentenceTransformerTrainer(model=model, train_dataset=rows, loss=loss,
                                             callbacks=trainer_callbacks(loss))
    """

    def __init__(
        self,
        model: nn.Module,
        queue_size: int,
        momentum: float = 0.0,
        temperature: float = 0.05,
        learnable_temperature: bool = False,
        symmetric: bool = False,
        positives: Mapping[int, set[int]] | PositivePairs | None = None,
        mask_known_positives: bool = True,
    ) -> None:
        super().__init__(model, temperature, learnable_temperature, symmetric, positives, mask_known_positives,
                         gather_across_processes=False)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.queues: dict[int, EmbeddingQueue] = {}  # one per embedding width (Matryoshka truncates)
        # a plain list, so the copy is no submodule: not in loss.parameters() (the optimizer), nor moved by .to()
        self._momentum_encoder: list[nn.Module] = []
        if self.momentum > 0:
            if model is None:
                raise ValueError("momentum > 0 needs the model to copy")
            self._momentum_encoder.append(self._frozen_copy(model))

    @staticmethod
    def _frozen_copy(model: nn.Module) -> nn.Module:
        encoder = copy.deepcopy(model)
        for parameter in encoder.parameters():
            parameter.requires_grad_(False)
        return encoder

    @property
    def momentum_encoder(self) -> nn.Module | None:
        return self._momentum_encoder[0] if self._momentum_encoder else None

    def queue_for(self, width: int) -> EmbeddingQueue:
        if width not in self.queues:
            self.queues[width] = EmbeddingQueue(self.queue_size)
        return self.queues[width]

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        if is_multi_process():
            raise RuntimeError("QueueInfoNCE is single-process only (each rank would queue other documents)")
        sentence_features = list(sentence_features)
        embeddings = embed_columns(self.model, sentence_features)
        loss, stats = self.loss_from_embeddings(embeddings, labels)
        self.record_stats(loss, stats)
        if self.model is None or self.model.training:  # evaluation leaves the queue alone
            documents = [e.detach() for e in embeddings[1:]]
            if self.momentum_encoder is not None:
                documents = self._momentum_documents(sentence_features[1:], embeddings[1].size(1))
            self.enqueue(documents, labels)
        return loss

    def _encoder_beside_model(self) -> nn.Module:
        """The momentum copy, moved to the online model's device if it is elsewhere (the trainer moves only the model)."""
        encoder = self.momentum_encoder
        device = next(self.model.parameters()).device
        if next(encoder.parameters()).device != device:
            encoder.to(device)
        return encoder

    def _momentum_documents(self, features: list[dict[str, Tensor]], width: int) -> list[Tensor]:
        encoder = self._encoder_beside_model()
        encoder.train(self.model.training)  # same dropout regime as the online encoder, as MoCo's key encoder
        with torch.no_grad():
            return [column[:, :width] for column in embed_columns(encoder, features)]

    def enqueue(self, documents: list[Tensor], labels: Tensor | None) -> None:
        """Push document columns ``[positives, negatives_1..n]`` (column-major, like the candidates) and their ids."""
        if not documents:
            return
        vectors = torch.cat([d.detach() for d in documents])
        batch_size = documents[0].size(0)
        if labels is not None and labels.dim() == 2 and labels.shape == (batch_size, 1 + len(documents)):
            ids = labels[:, 1:].to(vectors.device).long().T.reshape(-1)
        else:
            ids = torch.full((vectors.size(0),), -1, dtype=torch.long, device=vectors.device)
        self.queue_for(vectors.size(1)).push(vectors, ids)

    def loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one batch against its own documents and the queue (the queue is not changed)."""
        if len(embeddings) < 2:
            raise ValueError(f"QueueInfoNCE needs at least (query, positive) columns, got {len(embeddings)}")
        queries, docs = embeddings[0], list(embeddings[1:])
        batch_size = queries.size(0)
        ids = self._batch_ids(labels, len(embeddings), batch_size, queries.device)
        targets = torch.arange(batch_size, device=queries.device)
        queued, queued_ids = self.queue_for(queries.size(1)).contents(queries.device, queries.size(1))
        candidates = torch.cat([*(d.float() for d in docs), queued])  # batch column-major, then the queue oldest first
        temperature = self.current_temperature()

        mask = None
        if ids is not None:
            candidate_docs = torch.cat([ids[:, 1:].T.reshape(-1), queued_ids])
            mask = known_positive_mask(ids[:, 0], candidate_docs, self.positives, targets)
        loss, stats = info_nce_from_scores(cosine_scores(queries, candidates), targets, mask, temperature)

        if self.symmetric:  # InfoNCE's doc->query term over this batch's queries
            reverse_mask = None
            if ids is not None:
                reverse_mask = ids[:, 0].reshape(1, -1) == ids[:, 0].reshape(-1, 1)
                if self.positives is not None:
                    reverse_mask |= self.positives.contains(ids[:, 0], ids[:, 1]).T
                reverse_mask[targets, targets] = False
            reverse, _ = info_nce_from_scores(cosine_scores(docs[0], queries), targets, reverse_mask, temperature)
            loss = (loss + reverse) / 2
        stats["temperature"] = torch.as_tensor(temperature).detach().float()
        stats["global_batch"] = torch.tensor(float(batch_size))
        stats["queue_rows"] = torch.tensor(float(queued.size(0)))
        return loss, stats

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``theta_k <- m theta_k + (1 - m) theta_q``; call after every optimizer step (no-op without momentum)."""
        if self.momentum_encoder is None:
            return
        encoder = self._encoder_beside_model()
        for key, online in zip(encoder.parameters(), self.model.parameters(), strict=True):
            key.mul_(self.momentum).add_(online.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def sync_momentum_encoder(self) -> None:
        """Set the momentum copy to the online weights (start of training, after a checkpoint is restored)."""
        encoder = self.momentum_encoder
        if encoder is not None:
            encoder.load_state_dict(self.model.state_dict())

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict() | {"queue_size": self.queue_size, "momentum": self.momentum}
        config.pop("gather_across_processes", None)
        return config

    @property
    def citation(self) -> str:
        return INFO_NCE_CITATION + CITATION
