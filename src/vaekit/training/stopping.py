"""When training ends, and when it writes a checkpoint besides the one at every epoch's end."""

from __future__ import annotations

import time
from dataclasses import dataclass

from vaekit.config import TrainConfig
from vaekit.training.progress import Progress


@dataclass(frozen=True)
class EarlyStopping:
    """The epoch budget, and `patience` epochs without a better validation score (None: the whole budget)."""

    epochs: int
    patience: int | None

    def should_stop(self, progress: Progress) -> bool:
        out_of_patience = self.patience is not None and progress.epochs_without_improvement >= self.patience
        return progress.epoch >= self.epochs or out_of_patience

    def score(self, progress: Progress, score: float) -> bool:
        """Count an ended epoch's validation score; whether it is the best so far. Progress.epoch is still
        the epoch that ended."""
        improved = score > progress.best_score
        if improved:
            progress.best_score, progress.best_epoch, progress.epochs_without_improvement = score, progress.epoch + 1, 0
        else:
            progress.epochs_without_improvement += 1
        return improved


class CheckpointCadence:
    """Mid-epoch checkpoints every `checkpoint_every_steps` steps and every `checkpoint_every_minutes`."""

    def __init__(self, config: TrainConfig):
        self.every_steps, self.every_minutes = config.checkpoint_every_steps, config.checkpoint_every_minutes
        self.last = time.perf_counter()

    def due(self, global_step: int) -> bool:
        if self.every_steps and global_step % self.every_steps == 0:
            return True
        return bool(self.every_minutes) and time.perf_counter() - self.last >= 60 * self.every_minutes

    def written(self) -> None:
        self.last = time.perf_counter()
