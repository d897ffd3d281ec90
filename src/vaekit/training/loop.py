"""The training loop: Adam on the run's objective, validation every epoch, early stopping and exact resume.

`Trainer` composes the parts, each owning its own state: the data in its seeded order
(vaekit.training.data), a `Step` (eager, CUDA-graph or distributed shard), pure schedules, the
checkpointer and its write order, early stopping and checkpoint cadence, and a reporter. The loop
itself only loops: it asks each part in turn and reports through the reporter.

All randomness comes from explicit generators (vaekit.training.randomness), saved in every checkpoint,
so a run resumed from any checkpoint continues exactly as if never stopped.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from vaekit.config import TrainConfig, batch_size_for
from vaekit.data.source import Split, Splits
from vaekit.evaluation.bounds import dataset_bound
from vaekit.model.objectives import objective_for
from vaekit.runs.directory import WEIGHTS_FILE
from vaekit.runs.weights import load_weights
from vaekit.runtime.cpu import cpu_settings
from vaekit.runtime.world import SINGLE_PROCESS, World
from vaekit.training.averaging import WeightAverage
from vaekit.training.checkpointer import BeforeWrite, Checkpointer
from vaekit.training.console import ConsoleReporter, EpochLines, Reporter
from vaekit.training.cuda_graph import GraphFactory
from vaekit.training.data import TrainingData
from vaekit.training.explicit_step import ExplicitStep, explicit_step_suits
from vaekit.training.graphed_step import GraphedStep, graphs_suit
from vaekit.training.guard import FiniteCheck, NonFinite, TrainingDiverged
from vaekit.training.optim import Adam
from vaekit.training.progress import Progress
from vaekit.training.randomness import Randomness
from vaekit.training.schedules import Schedules
from vaekit.training.sharded_step import ShardStep
from vaekit.training.signals import StopRequest, TrainingInterrupted, signal_name
from vaekit.training.step import EagerStep, Step, StepAt, StepParts
from vaekit.training.stopping import CheckpointCadence, EarlyStopping
from vaekit.training.tensorboard import Reporters, epoch_pictures, tensorboard_reporter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hooks:
    """Where a caller reaches into training: `new_graph` makes the CUDA graphs of the graphed step (and,
    given, uses that step on any device: a CPU stand-in in tests); `before_write` is called before each
    run file is written, and `after_step` after each step, before a stop request is looked at (tests
    stand kills and signals there)."""

    new_graph: GraphFactory | None = None
    before_write: BeforeWrite | None = None
    after_step: Callable[[Progress], None] | None = None


def step_parts(model: nn.Module, config: TrainConfig, device: torch.device, binarize_dynamically: bool) -> StepParts:
    """The state the steps share: objective, optimizer, weight average, finite check, generators."""
    average = WeightAverage(model, config.weight_average)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = Adam(parameters, lr=config.learning_rate, betas=(0.9, config.adam_beta2))
    bf16 = config.precision == "bf16" and device.type == "cuda"
    if config.precision == "bf16" and not bf16:
        logger.warning("precision = 'bf16' applies to CUDA GPUs; training on %s stays float32", device.type)
    return StepParts(model, objective_for(config), optimizer, average, FiniteCheck(model, parameters),
                     Randomness(config.seed, device), binarize_dynamically, bf16)


def choose_step(parts: StepParts, config: TrainConfig, device: torch.device, world: World,
                new_graph: GraphFactory | None) -> Step:
    """The shard step under torchrun; on a GPU that can capture it, the graphed step; on a CPU, for the networks
    whose gradients it writes out, the explicit step (unless `config.step` asks for autograd's); else the eager one."""
    if world.size > 1:
        return ShardStep(parts, world, device, config.batch_size)
    eager = EagerStep(parts)
    if new_graph is not None:
        return GraphedStep(eager, config.batch_size, new_graph)
    if config.cuda_graphs and graphs_suit(parts.model, device):
        return GraphedStep(eager, config.batch_size)
    if config.step == "auto" and explicit_step_suits(parts, device):
        return ExplicitStep(parts)
    return eager


def choose_reporter(progress_bar: bool, epochs: int, world: World) -> Reporter:
    """What rank 0 shows while training: a bar and epoch lines on a terminal, the lines alone where stderr
    is a file or a pipe (a bar's every redraw would fill the log), nothing without `progress_bar`."""
    if not (progress_bar and world.is_main):
        return Reporter()
    return ConsoleReporter(epochs) if sys.stderr.isatty() else EpochLines(epochs)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        splits: Splits,
        config: TrainConfig,
        run_dir: Path,
        device: torch.device,
        binarize_dynamically: bool = False,
        progress_bar: bool = True,
        world: World = SINGLE_PROCESS,
        workers: int = 0,
        hooks: Hooks = Hooks(),
    ):
        """`world` is this process's place in a torchrun launch (vaekit.runtime.world); `workers` the
        processes that decode a streamed image folder (vaekit.data.streaming)."""
        config = replace(config, batch_size=batch_size_for(config, len(splits.train)))  # vaekit.train gives it resolved
        self.model, self.splits, self.config, self.device, self.world = model.to(device), splits, config, device, world
        self.run_dir, self.workers = Path(run_dir), workers
        self.conditional = bool(getattr(model, "classes", 0))  # its batches and bounds take the labels
        self.data = TrainingData(splits.train.x, splits.codec, config.batch_size, device, world, workers,
                                 splits.raw.description, splits.train.y if self.conditional else None)
        if config.output_bias_from_data:
            self.model.start_output_at(self.data.mean())
        self.parts = step_parts(self.model, config, device, binarize_dynamically)
        self.objective = self.parts.objective
        self.step = choose_step(self.parts, config, device, world, hooks.new_graph)
        self.schedules = Schedules(config, self.data.steps_per_epoch)
        self.stopping = EarlyStopping(config.epochs, config.patience)
        self.checkpointer = Checkpointer(self.run_dir, world, self.model, self.parts.optimizer, self.parts.average,
                                         self.parts.randomness, hooks.before_write)
        self.reporter = choose_reporter(progress_bar, config.epochs, world)
        if config.tensorboard:  # beside the console, never instead of it
            pictures = epoch_pictures(self.model, self.parts.average, splits, config.seed)
            self.reporter = Reporters(self.reporter, tensorboard_reporter(self.run_dir, config.epochs, world, pictures))
        self.after_step = hooks.after_step
        self.progress = Progress()

    def resume(self) -> None:
        """Continue from the run directory's checkpoint, repairing what a kill may have left half done."""
        restored = self.checkpointer.restore()
        if restored is not None:
            self.progress = restored
        # The epoch budget may have been raised on the command line: a finished run can go on.
        self.progress.finished = self.stopping.should_stop(self.progress)
        self.checkpointer.repair(self.progress)

    def fit(self, stop: StopRequest | None = None) -> list[dict[str, Any]]:
        """Train until the epochs run out or early stopping ends it; returns this call's epoch records.

        If `stop` is requested, the current step finishes, a checkpoint is written and
        `TrainingInterrupted` is raised.
        """
        records = []
        self.model.train()
        with cpu_settings(self.device, self.config.threads):
            while not self.progress.finished:
                self.run_epoch(stop)
                records.append(self.end_epoch())
                self.reporter.epoch_ended(records[-1], self.progress.finished)
                signal_number, _ = self._agreed(stop, due=False)
                if signal_number is not None and not self.progress.finished:
                    self._interrupted(signal_number)
        return records

    def run_epoch(self, stop: StopRequest | None = None) -> None:
        progress, steps = self.progress, self.data.steps_per_epoch
        batches = self.data.batches(self.data.order(progress.epoch, self.config.seed), progress.step_in_epoch)
        # Rank 0 carries the epoch's sums so far (the checkpoint's); other ranks add theirs from zero.
        totals = torch.tensor(progress.totals if self.world.is_main else [0.0] * 3, dtype=torch.float64,
                              device=self.device)
        started, cadence = time.perf_counter() - progress.epoch_seconds, CheckpointCadence(self.config)
        self.reporter.epoch_started(progress.epoch, steps, progress.step_in_epoch)
        for step in range(progress.step_in_epoch, steps):
            examples, batch = next(batches)
            sums = self._take(batch, examples)
            totals += sums.double()
            progress.step_in_epoch, progress.global_step = step + 1, progress.global_step + 1
            progress.examples_in_epoch += examples
            self.reporter.step_ended(step, sums, len(batch))
            if self.after_step is not None:
                self.after_step(progress)
            signal_number, due = self._agreed(stop, cadence.due(progress.global_step))
            if signal_number is not None:
                self._save_mid_epoch(totals, started)
                self._interrupted(signal_number)
            if due and progress.step_in_epoch < steps:
                self._save_mid_epoch(totals, started)
                cadence.written()
        self.reporter.epoch_trained()
        progress.totals, progress.epoch_seconds = self._epoch_totals(totals), time.perf_counter() - started

    def _take(self, batch: Any, examples: int) -> torch.Tensor:
        """One step on a batch of `examples` (this rank's shard of them), at the schedules' values now."""
        done = self.progress.global_step
        at = StepAt(done + 1, self.schedules.beta(done), self.schedules.learning_rate(done), examples)
        try:
            return self.step(batch, at)
        except NonFinite as non_finite:
            self._diverged(non_finite.what)

    def end_epoch(self) -> dict[str, Any]:
        """Validate, record metrics, decide on early stopping, checkpoint, and keep the best weights."""
        progress = self.progress
        with self.parts.average.applied():  # validation sees the model the run keeps
            record = self._epoch_record()
        # The bound the run optimizes: the IWAE bound of an IWAE run, the ELBO otherwise.
        key = self.objective.score
        score = record[f"val_{key}"] if f"val_{key}" in record else record[f"train_{key}"]
        if not math.isfinite(score):
            self._diverged(self.objective.description)
        improved = self.stopping.score(progress, score)
        progress.end_epoch()
        progress.finished = self.stopping.should_stop(progress)
        self.checkpointer.record_epoch(record, progress, improved)
        return record

    def _epoch_record(self) -> dict[str, Any]:
        """The metrics.jsonl line of the epoch just trained: training means and validation figures."""
        progress, step = self.progress, self.progress.global_step
        record: dict[str, Any] = {"epoch": progress.epoch + 1, "step": step, "beta": self.schedules.beta(step),
                                  "learning_rate": self.schedules.learning_rate(step)}
        # An IWAE run's sums hold its bound; its ELBO is of the same K samples (`Iwae.figures`).
        train = torch.tensor([value / progress.examples_in_epoch for value in progress.totals], dtype=torch.float64)
        record.update({f"train_{key}": value for key, value in self.objective.figures(train).items()})
        if len(self.splits.validation):
            validation = self.split_bound(self.splits.validation)
            record.update({f"val_{key}": value for key, value in validation.items()})
        record["seconds"] = progress.epoch_seconds
        record["images_per_second"] = progress.examples_in_epoch / max(progress.epoch_seconds, 1e-9)
        return record

    def split_bound(self, split: Split) -> dict[str, float]:
        """The validation bound of a split, every rank taking a shard of every batch."""
        return dataset_bound(self.model, split.x, self.splits.codec, self.objective.validation, seed=self.config.seed,
                             world=self.world, workers=self.workers, labels=split.y if self.conditional else None)

    def write_results(self) -> dict[str, Any]:
        """Test figures of the best weights, written to results.json."""
        if self.world.is_main:
            load_weights(self.model, self.run_dir / WEIGHTS_FILE)
        self.world.broadcast_module(self.model)  # rank 0's file, which need not be on the other ranks' machines
        test = self.split_bound(self.splits.test)
        results = {
            "best_epoch": self.progress.best_epoch,
            "epochs_trained": self.progress.epoch,
            "train_seconds": self.progress.train_seconds,
            **{f"test_{key}": value for key, value in test.items()},
            "test_examples": len(self.splits.test),
        }
        self.checkpointer.write_results(results, self.progress)
        return results

    # ----- between steps --------------------------------------------------------------------------
    def _save_mid_epoch(self, totals: torch.Tensor, started: float) -> None:
        self.progress.totals, self.progress.epoch_seconds = self._epoch_totals(totals), time.perf_counter() - started
        self.checkpointer.save(self.progress)

    def _epoch_totals(self, totals: torch.Tensor) -> list[float]:
        """The epoch's sums so far over all ranks; rank 0 carries them on, the others restart from zero."""
        if self.world.size == 1:
            return totals.tolist()
        summed = self.world.all_reduce_sum(totals.clone())
        if self.world.is_main:
            totals.copy_(summed)
        else:
            totals.zero_()
        return summed.tolist()

    def _agreed(self, stop: StopRequest | None, due: bool) -> tuple[int | None, bool]:
        """The signal that asks training to stop (None while none has), and whether a checkpoint is
        due. All ranks decide together: a signal, or the clock, may reach them at different steps."""
        signal_number = stop.signal_number if stop is not None else None
        if self.world.size == 1:
            return signal_number, due
        agreed = self.world.all_reduce_max(torch.tensor([signal_number or 0, int(due)], device=self.device))
        signal_number, due = agreed.tolist()
        return signal_number or None, bool(due)

    def _interrupted(self, signal_number: int) -> NoReturn:
        progress = self.progress
        if progress.step_in_epoch == 0:
            where = f"after epoch {progress.epoch}"
        else:
            where = f"at epoch {progress.epoch + 1}, step {progress.step_in_epoch} of {self.data.steps_per_epoch}"
        raise TrainingInterrupted(
            f"stopped by {signal_name(signal_number)} {where}; the checkpoint holds everything. Continue exactly "
            f"where it stopped with: vaekit train --resume {self.run_dir}",
            signal_number,
        )

    def _diverged(self, what: str) -> NoReturn:
        rate = self.config.learning_rate
        where = self.progress.where(self.data.steps_per_epoch)
        if self.checkpointer.has_checkpoint:
            kept = f"the last good checkpoint is kept in {self.run_dir}, and"
        else:
            kept = "no checkpoint was written yet, so"
        raise TrainingDiverged(
            f"training diverged: {what} became NaN or infinite {where}; the likely cause is a learning rate "
            f"too high for this model and data ({rate:g}). Nothing was retried: {kept} "
            f"`vaekit train --resume {self.run_dir} --learning-rate {rate / 10:g}` continues with a lower one"
        )
