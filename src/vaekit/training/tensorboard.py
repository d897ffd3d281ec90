"""TensorBoard's view of a run (`--tensorboard`): each epoch's figures as scalars and, for images, decoded prior
samples and reconstructions, in RUN/tensorboard/ for `tensorboard --logdir runs/`.

metrics.jsonl stays the record of a run; this is a second log, written from its records, for people who track
runs in TensorBoard. It needs the optional extra, `pip install 'vaekit[tensorboard]'`, and says so in one line
before training starts where it is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaekit.data.batch import Batch
from vaekit.data.source import IMAGE, Splits
from vaekit.errors import UserError
from vaekit.runs.directory import TENSORBOARD_DIR
from vaekit.runtime.world import World
from vaekit.training.averaging import WeightAverage
from vaekit.training.console import EPOCH_LINES, Reporter

INSTALL = "pip install 'vaekit[tensorboard]'"
PICTURES = 32  # prior samples, and validation examples with their reconstructions
# metrics.jsonl keys -> TensorBoard's groups of charts; "epoch" is the x axis and "step" the step it ended at
GROUPS = {"train_": "train/", "val_": "validation/"}
SCHEDULE = ("beta", "learning_rate")
NOT_PLOTTED = ("epoch", "step")

Pictures = Callable[[], dict[str, torch.Tensor]]


def summary_writer() -> type:
    """torch's SummaryWriter, or one line saying how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # the tensorboard package is missing (or too old for torch)
        raise UserError(f"--tensorboard needs the tensorboard package, which is not installed: {INSTALL}") from error
    return SummaryWriter


def tag(key: str) -> str:
    """A metrics.jsonl key as a TensorBoard tag: train_elbo -> train/elbo, beta -> schedule/beta."""
    for prefix, group in GROUPS.items():
        if key.startswith(prefix):
            return group + key.removeprefix(prefix)
    return ("schedule/" if key in SCHEDULE else "speed/") + key


class TensorBoardReporter(Reporter):
    """Writes each epoch's record as scalars (x axis: the epoch), and pictures every k-th epoch and the last."""

    def __init__(self, run_dir: Path, epochs: int, pictures: Pictures | None = None):
        self.writer_class = summary_writer()
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.every = max(1, epochs // EPOCH_LINES)
        self.pictures = pictures
        self.writer: Any = None  # opened at the first epoch, after the run directory is prepared

    def epoch_ended(self, record: dict[str, Any], finished: bool) -> None:
        epoch = record["epoch"]
        if self.writer is None:
            # A run resumed after a kill trains again the epochs after its checkpoint: what was logged from
            # this epoch on is hidden (purged), so each epoch appears once, as metrics.jsonl holds it.
            self.writer = self.writer_class(str(self.log_dir), purge_step=epoch)
        for key, value in record.items():
            if key not in NOT_PLOTTED and isinstance(value, (int, float)):
                self.writer.add_scalar(tag(key), value, epoch)
        if self.pictures is not None and (epoch % self.every == 0 or finished):
            for name, images in self.pictures().items():
                self.writer.add_images(name, images, epoch, dataformats="NCHW")
        self.writer.flush()
        if finished:
            self.writer.close()
            self.writer = None


class Reporters(Reporter):
    """Several reporters told the same thing in turn: the console's lines and TensorBoard's log."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def epoch_started(self, epoch: int, steps: int, first_step: int) -> None:
        for reporter in self.reporters:
            reporter.epoch_started(epoch, steps, first_step)

    def step_ended(self, step: int, sums: torch.Tensor, examples: int) -> None:
        for reporter in self.reporters:
            reporter.step_ended(step, sums, examples)

    def epoch_trained(self) -> None:
        for reporter in self.reporters:
            reporter.epoch_trained()

    def epoch_ended(self, record: dict[str, Any], finished: bool) -> None:
        for reporter in self.reporters:
            reporter.epoch_ended(record, finished)


def epoch_pictures(model: nn.Module, average: WeightAverage, splits: Splits, seed: int) -> Pictures | None:
    """For image data: the kept (averaged) model's E[x|z] for the same prior draws every epoch, the first
    validation examples and their reconstructions, as pixels (N, C, H, W). None for other data."""
    shape = splits.event_shape
    if splits.raw.kind != IMAGE or len(shape) != 3 or shape[0] not in (1, 3):
        return None
    shown = splits.validation if len(splits.validation) else splits.test
    stored = torch.as_tensor(np.asarray(shown.x[:PICTURES]))

    @torch.no_grad()
    def pictures() -> dict[str, torch.Tensor]:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)  # its own: training's draws are untouched
        was_training = model.training
        model.eval()
        with average.applied():
            labels = torch.arange(PICTURES, device=device) % model.classes if model.classes else None
            samples = model.sample(PICTURES, generator, labels)
            shown_labels = torch.as_tensor(np.asarray(shown.y[:PICTURES]), device=device) if model.classes else None
            loc, _ = model.encode(Batch(splits.codec.to_model(stored.to(device)), shown_labels))
            reconstructions = model.decode_mean(loc, shown_labels)
        model.train(was_training)
        pixels = splits.codec.from_model
        return {"pictures/samples": pixels(samples).cpu(), "pictures/inputs": stored,
                "pictures/reconstructions": pixels(reconstructions).cpu()}

    return pictures


def tensorboard_reporter(run_dir: Path, epochs: int, world: World, pictures: Pictures | None) -> Reporter:
    """Rank 0's TensorBoard log; every rank checks the package first, so that none starts training without it."""
    summary_writer()
    return TensorBoardReporter(run_dir, epochs, pictures) if world.is_main else Reporter()
