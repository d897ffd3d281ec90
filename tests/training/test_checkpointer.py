"""training/checkpointer.py: an ended epoch is written in the order that a kill cannot harm."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers import tiny
from vaekit.api import train
from vaekit.training.loop import Hooks
from vaekit.training.progress import Progress


def test_an_epoch_writes_its_metrics_then_the_checkpoint_then_the_best_weights(tmp_path: Path):
    written: list[tuple[str, int, int]] = []

    def record(name: str, progress: Progress) -> None:
        written.append((name, progress.epoch, progress.step_in_epoch))

    config = tiny(epochs=2, checkpoint_every_steps=None, patience=None)
    train(config, tmp_path / "run", hooks=Hooks(before_write=record))
    ends = [entry for entry in written if entry[2] == 0]
    assert ends[:3] == [("metrics.jsonl", 1, 0), ("checkpoint.safetensors", 1, 0), ("model.safetensors", 1, 0)]
    assert written[-1][0] == "results.json"
    assert [name for name, _, _ in written].count("checkpoint.safetensors") == 2  # one per epoch, no more


def test_a_rank_other_than_0_writes_nothing(tmp_path: Path):
    from vaekit.runtime.world import World
    from vaekit.training.averaging import WeightAverage
    from vaekit.training.checkpointer import Checkpointer
    from vaekit.training.optim import Adam
    from vaekit.training.randomness import Randomness

    model = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(tmp_path, World(1, 2), model, Adam(model.parameters()), WeightAverage(model, 0.0),
                                Randomness(0, torch.device("cpu")))
    checkpointer.record_epoch({"epoch": 1}, Progress(epoch=1), improved=True)
    checkpointer.write_results({}, Progress())
    assert list(tmp_path.iterdir()) == []
