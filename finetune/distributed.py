"""The few torch.distributed helpers the losses need, on top of sentence-transformers' own.

Gathering embeddings *with* gradient is sentence-transformers' ``all_gather_with_grad``
(``torch.distributed.nn.all_gather``: the backward pass sums each rank's gradient back to the
rank that produced the embedding). Indices travel without gradient. Every helper is the identity
when no process group is initialised or it has a single process, so single-process code
paths never branch on it.
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from sentence_transformers.util import all_gather, all_gather_with_grad, is_dist_initialized
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if is_dist_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_multi_process() -> bool:
    return world()[1] > 1


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, gradients flowing back to their owners."""
    return all_gather_with_grad(tensor) if is_multi_process() else tensor


def gather_no_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` (e.g. integer ids) from every rank along dim 0, without gradient."""
    return all_gather(tensor.contiguous(), with_grad=False) if is_multi_process() else tensor


def mean_over_ranks(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over ranks (a new tensor; ``tensor`` itself outside a process group)."""
    if not is_multi_process():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / dist.get_world_size()


def average_gradient_hook(grad: Tensor) -> Tensor:
    """A tensor hook averaging a gradient over ranks.

    For parameters that live in the loss rather than the model (a learnable temperature):
    DDP only all-reduces the model's parameters, so without this each rank would drift to its
    own temperature.
    """
    return mean_over_ranks(grad)


def tensor_digest(module: torch.nn.Module) -> str:
    """A sha256 over a module's state_dict (names, shapes and bytes), to compare weights across ranks."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        array = value.detach().cpu().contiguous().reshape(-1)
        digest.update(str(tuple(array.shape)).encode())
        digest.update(array.view(torch.uint8).numpy().tobytes() if array.numel() else b"")
    return digest.hexdigest()
