"""Where a run stands: the counters and sums a checkpoint saves so that a resumed run continues exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vaekit.errors import UserError


@dataclass
class Progress:
    """Saved in every checkpoint (as JSON)."""

    epoch: int = 0  # the epoch being trained (0-based); after an epoch ends, the count of epochs done
    step_in_epoch: int = 0  # batches of `epoch` already done
    global_step: int = 0
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # Σ bound, recon, KL this epoch
    examples_in_epoch: int = 0
    epoch_seconds: float = 0.0  # time spent in `epoch` before the last checkpoint
    best_score: float = -math.inf
    best_epoch: int = 0  # 1-based, like metrics.jsonl; 0 before the first epoch ends
    epochs_without_improvement: int = 0
    metrics_lines: int = 0  # lines of metrics.jsonl that belong to this state
    finished: bool = False
    train_seconds: float = 0.0

    @classmethod
    def from_dict(cls, saved: Any, origin: Path) -> Progress:
        names = {f.name for f in fields(cls)}
        if not isinstance(saved, dict) or set(saved) != names:
            raise UserError(f"{origin}: training progress in an unknown format; it was not written by this vaekit")
        progress = cls(**saved)
        if not progress._well_typed():
            raise UserError(
                f"{origin}: training progress holds values of the wrong type; it was not written by this vaekit"
            )
        return progress

    def _well_typed(self) -> bool:
        counts = (self.epoch, self.step_in_epoch, self.global_step, self.examples_in_epoch, self.best_epoch,
                  self.epochs_without_improvement, self.metrics_lines)
        numbers = (self.epoch_seconds, self.best_score, self.train_seconds)
        return (all(type(n) is int and n >= 0 for n in counts) and all(type(x) in (int, float) for x in numbers)
                and isinstance(self.totals, list) and len(self.totals) == 3
                and all(type(x) in (int, float) for x in self.totals) and type(self.finished) is bool)

    @property
    def best_weights_in_checkpoint(self) -> bool:
        """Whether this state was saved at the end of the best epoch, so its weights are the best."""
        return self.step_in_epoch == 0 and self.best_epoch == self.epoch > 0

    def end_epoch(self) -> None:
        """Count the epoch just recorded as done and start the next one from zero."""
        self.train_seconds += self.epoch_seconds
        self.metrics_lines += 1
        self.epoch += 1
        self.step_in_epoch, self.examples_in_epoch, self.epoch_seconds = 0, 0, 0.0
        self.totals = [0.0, 0.0, 0.0]

    def where(self, steps_per_epoch: int) -> str:
        """The step being taken, for a message: 'at epoch 2, step 8 of 22', or the end of an epoch."""
        epoch, step = self.epoch + 1, self.step_in_epoch + 1
        return (
            f"at epoch {epoch}, step {step} of {steps_per_epoch}"
            if step <= steps_per_epoch
            else f"at the end of epoch {epoch}"
        )
