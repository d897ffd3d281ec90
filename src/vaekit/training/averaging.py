"""Polyak averaging: a running average of the weights, the model a run validates, keeps and reports.

Adam with a step size large enough to learn quickly leaves the weights jittering around the point they
approach; an exponential moving average of them sits closer to it. After every step

    average ← d·average + (1 − d)·weights,   d = min(decay, (1 + t) / (10 + t)) at step t,

so early on, when the weights move fast, the average forgets its start quickly (the ramp of TensorFlow's
`ExponentialMovingAverage` with `num_updates`); later it spans about 1 / (1 − decay) steps. The weights
are folded in every `every`-th step only, with the decay of that many steps, dᵉᵛᵉʳʸ: one pass over the
weights and the average costs about a fortieth of a reference-network step on a CPU (docs/
performance.md), and an average over hundreds of steps hardly changes for seeing every fourth.
Training steps always move the raw weights; `applied()` puts the average in their place for validation,
saving and testing. Decay 0 turns it off: the average is then the weights themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

AVERAGE_EVERY = 4  # steps between updates of the average


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float, every: int = AVERAGE_EVERY):
        self.decay, self.every = decay, every
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad] if decay > 0 else []
        self.names = [name for name, _ in named]
        self.parameters = [p for _, p in named]
        self.average = [p.detach().clone() for p in self.parameters]

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average at the weights as they are now."""
        for p, average in zip(self.parameters, self.average):
            average.copy_(p)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimizer step number `step` (1 for the first), if it is an update step."""
        if not self.average or step % self.every:
            return
        decay = min(self.decay, (1 + step) / (10 + step)) ** self.every
        torch._foreach_lerp_(self.average, [p.detach() for p in self.parameters], 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model's parameters for the duration (swapped, not copied)."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def _swap(self) -> None:
        for p, average in zip(self.parameters, self.average):
            p.data, average.data = average.data, p.data

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averages by parameter name, as a checkpoint stores them."""
        return dict(zip(self.names, self.average))

    @torch.no_grad()
    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Averages saved by `state_dict` (names and shapes checked by the caller, `checkpoint.check_and_load`)."""
        for name, average in zip(self.names, self.average):
            average.copy_(tensors[name])
