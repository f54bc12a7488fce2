"""The FIFO of detached document embeddings behind :class:`finetune.losses.queue.QueueInfoNCE`."""

from __future__ import annotations

import torch
from torch import Tensor


class EmbeddingQueue:
    """A FIFO of at most ``max_size`` detached embedding rows with their document ids (oldest first).

    ``push`` appends a block and drops the oldest rows beyond ``max_size`` (a block larger than
    the queue keeps only its last ``max_size`` rows). Ids are long, ``-1`` for "unknown".
    """

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"a queue needs max_size >= 1, got {max_size}")
        self.max_size = int(max_size)
        self.vectors: Tensor | None = None
        self.ids: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.ids is None else int(self.ids.numel())

    def push(self, vectors: Tensor, ids: Tensor) -> None:
        vectors = vectors.detach().float()
        ids = ids.detach().reshape(-1).to(device=vectors.device, dtype=torch.long)
        if vectors.dim() != 2 or ids.numel() != vectors.size(0):
            raise ValueError(f"push needs [n, d] vectors and n ids, got {tuple(vectors.shape)} and {ids.numel()} ids")
        if self.vectors is not None:
            if self.vectors.size(1) != vectors.size(1):
                raise ValueError(f"queue holds width {self.vectors.size(1)}, got {vectors.size(1)}")
            vectors = torch.cat([self.vectors.to(vectors.device), vectors])
            ids = torch.cat([self.ids.to(vectors.device), ids])
        self.vectors, self.ids = vectors[-self.max_size:], ids[-self.max_size:]

    def contents(self, device: torch.device, width: int) -> tuple[Tensor, Tensor]:
        """``(vectors [n, width], ids [n])`` on ``device``; empty tensors when the queue is empty."""
        if self.vectors is None:
            return torch.zeros(0, width, device=device), torch.zeros(0, dtype=torch.long, device=device)
        return self.vectors.to(device), self.ids.to(device)

    def clear(self) -> None:
        self.vectors = self.ids = None
