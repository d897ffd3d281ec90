"""One training step: forward and backward, the finite check, Adam's update and the weight average.

A `Step` is called with a batch and where the run stands (`StepAt`) and returns the batch's sums of the
bound, the reconstruction term and the KL. Four variants take the same step: `EagerStep` here, the
CUDA-graph replay of it (vaekit.training.graphed_step), one process's shard of a distributed batch
(vaekit.training.sharded_step), and on a CPU the MLP's step with its gradients written out by hand
(vaekit.training.explicit_step: the same numbers to float32 rounding, not bit for bit). Each leaves no
gradients behind: they are freed as soon as the update is taken, so validation and checkpoints between epochs
reuse their memory instead of adding to the peak (the explicit step keeps its one preallocated buffer).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import nn

from vaekit.data.batch import Batch
from vaekit.model.objectives import BoundTerms, Objective
from vaekit.training.averaging import WeightAverage
from vaekit.training.guard import FiniteCheck
from vaekit.training.optim import Adam
from vaekit.training.randomness import Randomness


@dataclass(frozen=True)
class StepAt:
    """What a step needs to know of the run: its number (1 for the first), the schedules' values now,
    and the size of the global batch (the batch itself, but for one shard of a distributed run)."""

    number: int
    beta: float
    learning_rate: float
    global_batch: int


class Step(Protocol):
    def __call__(self, batch: Batch, at: StepAt) -> torch.Tensor: ...


@dataclass
class StepParts:
    """The state every step variant works on, shared with the checkpointer and the loop."""

    model: nn.Module
    objective: Objective
    optimizer: Adam
    average: WeightAverage
    guard: FiniteCheck
    randomness: Randomness
    binarize_dynamically: bool = False  # draw each pixel's 0 or 1 afresh every step, from its grey level
    bf16: bool = False  # autocast the networks' products to bf16 (CUDA only)

    def update(self, at: StepAt) -> None:
        """Adam's step at `at.learning_rate` with the gradients computed, folded into the weight average,
        and the gradients freed."""
        self.optimizer.param_groups[0]["lr"] = at.learning_rate
        self.optimizer.step()
        self.average.update(at.number)
        self.optimizer.zero_grad(set_to_none=True)

    def precision(self, cache: bool = True) -> AbstractContextManager:
        """bf16 autocast where asked: it reaches the networks' products only, as the bounds cast their
        outputs back to float32. A CUDA graph cannot keep autocast's cache (`cache=False`)."""
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache) if self.bf16 else nullcontext()


class EagerStep:
    def __init__(self, parts: StepParts):
        self.parts = parts

    def forward_backward(
        self, batch: Batch, beta: float | torch.Tensor, autocast_cache: bool = True
    ) -> tuple[torch.Tensor, BoundTerms]:
        """The loss of a batch and its terms, with the gradients computed."""
        parts = self.parts
        if parts.binarize_dynamically:
            batch = replace(batch, x=torch.bernoulli(batch.x, generator=parts.randomness.noise))
        with parts.precision(autocast_cache):
            terms = parts.objective.terms(parts.model, batch, parts.randomness.noise)
        loss = parts.objective.loss(terms, beta)
        loss.backward()
        return loss, terms

    def __call__(self, batch: Batch, at: StepAt) -> torch.Tensor:
        loss, terms = self.forward_backward(batch, at.beta)
        self.parts.guard.check(loss)
        self.parts.update(at)
        return terms.sums()
