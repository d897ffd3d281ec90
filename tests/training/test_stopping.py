"""training/stopping.py: the epoch budget, patience, and mid-epoch checkpoint cadence."""

from __future__ import annotations

from vaekit.config import TrainConfig
from vaekit.training.progress import Progress
from vaekit.training.stopping import CheckpointCadence, EarlyStopping


def test_patience_counts_epochs_without_a_better_score():
    stopping, progress = EarlyStopping(epochs=100, patience=2), Progress()
    for epoch, score in enumerate([-5.0, -4.0, -4.5, -4.0]):
        progress.epoch = epoch
        improved = stopping.score(progress, score)
        assert improved == (epoch in (0, 1))
    assert (progress.best_score, progress.best_epoch, progress.epochs_without_improvement) == (-4.0, 2, 2)
    assert stopping.should_stop(progress)


def test_the_budget_ends_training_without_patience():
    stopping = EarlyStopping(epochs=3, patience=None)
    assert not stopping.should_stop(Progress(epoch=2, epochs_without_improvement=50))
    assert stopping.should_stop(Progress(epoch=3))


def test_a_checkpoint_is_due_every_n_steps_or_minutes():
    assert [CheckpointCadence(TrainConfig(checkpoint_every_steps=3)).due(step) for step in (1, 3, 6, 7)] == [
        False, True, True, False]
    assert not CheckpointCadence(TrainConfig()).due(5)
    assert CheckpointCadence(TrainConfig(checkpoint_every_minutes=1e-9)).due(1)
