"""The KL weight and the step size as pure functions of the global step, so a resumed run continues them exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vaekit.config import TrainConfig


def beta_at(step: int, beta: float, warmup_steps: int) -> float:
    """The KL weight at `step`: β, ramped linearly from 0 over the first `warmup_steps` steps."""
    if warmup_steps == 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def learning_rate_at(step: int, rate: float, schedule: str, total_steps: int) -> float:
    """Adam's step size at `step`: constant, or a half cosine from `rate` to 0 over `total_steps`."""
    if schedule == "constant":
        return rate
    progress = min(1.0, step / total_steps)
    return rate * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Schedules:
    """The run's schedules, per step: warm-up over `warmup_epochs`, the cosine over the `epochs` budget."""

    config: TrainConfig
    steps_per_epoch: int

    def beta(self, step: int) -> float:
        return beta_at(step, self.config.beta, (self.config.warmup_epochs or 0) * self.steps_per_epoch)

    def learning_rate(self, step: int) -> float:
        total = self.config.epochs * self.steps_per_epoch
        return learning_rate_at(step, self.config.learning_rate, self.config.lr_schedule, total)
