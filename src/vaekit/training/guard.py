"""The divergence guard: stop before a NaN or infinite loss or gradient reaches the weights.

A gradient's sum is NaN or infinite when any of its entries is (or when they are absurdly large,
which is divergence too); the loss and the sums are checked together, in the one host sync per step.
Nothing is retried: the loop turns `NonFinite` into `TrainingDiverged`, a message that says where it
happened, what was kept and how to go on with a lower step size. docs/performance.md gives what
the check costs a step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaekit.errors import UserError
from vaekit.runtime.world import World


class TrainingDiverged(UserError):
    """The loss or a gradient became NaN or infinite."""


class NonFinite(Exception):
    """Raised by a step that found `what` ("the loss", "the gradient of NAME") NaN or infinite."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class FiniteCheck:
    def __init__(self, model: nn.Module, parameters: Sequence[torch.Tensor]):
        self.names = {id(p): name for name, p in model.named_parameters()}
        self.parameters = list(parameters)

    def values(self, loss: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The parameters with gradients, and what the check looks at: the loss, then the sum of each of
        their gradients, stacked."""
        with_grads = [p for p in self.parameters if p.grad is not None]
        return with_grads, torch.stack([loss.detach(), *(p.grad.sum() for p in with_grads)])

    def check(self, loss: torch.Tensor) -> None:
        """Raise `NonFinite` if the loss or a gradient is NaN or infinite."""
        with_grads, checks = self.values(loss)
        if not bool(torch.isfinite(checks).all()):
            raise NonFinite(self.culprit(checks, with_grads))

    def check_on_every_rank(self, loss: torch.Tensor, world: World) -> None:
        """`check`, agreed by all ranks: a loss that is NaN on one rank stops them all."""
        finite = torch.isfinite(self.values(loss)[1]).all()
        if world.all_reduce_max((~finite).to(torch.float32).reshape(1)).item() == 0:
            return
        self.check(loss)  # names the loss or gradient where this rank saw it
        raise NonFinite("the loss of another process's shard")

    def culprit(self, checks: torch.Tensor, with_grads: Sequence[torch.Tensor]) -> str:
        """What became NaN or infinite: the loss (checks[0]), or the first parameter whose gradient sum did."""
        if not torch.isfinite(checks[0]):
            return "the loss"
        culprit = next(p for p, total in zip(with_grads, checks[1:]) if not torch.isfinite(total))
        return f"the gradient of {self.names[id(culprit)]}"
