"""The trainer callbacks a loss needs beside it: the queue loss's momentum encoder follows the trained one.

:func:`trainer_callbacks` finds what a loss (or a wrapper of it, such as ``MatryoshkaLoss``) needs;
:func:`finetune.trainer.build_trainer` adds them to the trainer's callbacks.
"""

from __future__ import annotations

from torch import nn
from transformers import TrainerCallback

from finetune.losses.queue import QueueInfoNCE


def find_queue_losses(loss: nn.Module | None) -> list[QueueInfoNCE]:
    """The :class:`QueueInfoNCE` inside ``loss`` or wrappers of it (``MatryoshkaLoss`` keeps the inner one as ``.loss``)."""
    found, seen = [], set()
    while isinstance(loss, nn.Module) and id(loss) not in seen:
        seen.add(id(loss))
        if isinstance(loss, QueueInfoNCE):
            found.append(loss)
        loss = getattr(loss, "loss", None)
    return found


def trainer_callbacks(loss: nn.Module | None) -> list:
    """The trainer callbacks ``loss`` needs: a :class:`MomentumUpdate` per queue loss with momentum."""
    return [MomentumUpdate(q) for q in find_queue_losses(loss) if q.momentum_encoder is not None]


class MomentumUpdate(TrainerCallback):
    """Synchronise the momentum copy when training starts, then update it after every optimizer step."""

    def __init__(self, loss: QueueInfoNCE) -> None:
        self.loss = loss

    def on_train_begin(self, args, state, control, **kwargs):
        self.loss.sync_momentum_encoder()  # after the trainer restored a checkpoint into the online model
        for queue in self.loss.queues.values():
            queue.clear()

    def on_step_end(self, args, state, control, **kwargs):
        self.loss.momentum_update()
