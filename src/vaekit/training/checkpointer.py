"""The files a run writes while it trains, and the order that makes a kill at any instant harmless.

The end of an epoch writes, in this order: a line of metrics.jsonl, checkpoint.safetensors, and
(when validation improved) model.safetensors. A kill between any two leaves a state that `repair`
mends on resume: metrics beyond the checkpoint are dropped, and best weights that did not reach
model.safetensors are still the checkpoint's own weights. Only rank 0 of a distributed run writes;
every rank holds the same state.

A write the disk refuses (full, read-only) is therefore harmless too: training stops with one line that
names the file, says the last checkpoint is intact and how to continue from it once the disk is fixed.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from torch import nn

from vaekit.errors import UserError
from vaekit.runs.checkpoint import load_training_state, save_training_state, trained_epochs
from vaekit.runs.directory import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, RESULTS_FILE, RUN_FILES, WEIGHTS_FILE
from vaekit.runs.files import CannotWrite, append_durably, atomic_write_text, remove_stale_temporaries
from vaekit.runs.weights import read_safetensors, save_weights
from vaekit.runtime.world import World
from vaekit.training.averaging import WeightAverage
from vaekit.training.optim import Adam
from vaekit.training.progress import Progress
from vaekit.training.randomness import Randomness

logger = logging.getLogger(__name__)
# Called with a run file's name and the progress it records, before the file is written: where tests
# stand a kill (by raising), or count the writes.
BeforeWrite = Callable[[str, Progress], None]


def _nothing(name: str, progress: Progress) -> None:
    pass


def _point(progress: Progress) -> str:
    """Where a checkpoint stands, for a message: 'the end of epoch 3', or 'epoch 4, step 8'."""
    if progress.step_in_epoch == 0:
        return f"the end of epoch {progress.epoch}" if progress.epoch else "the start"
    return f"epoch {progress.epoch + 1}, step {progress.step_in_epoch}"


def epochs_trained(run_dir: Path) -> int | None:
    """The epochs that the run directory's checkpoint has trained (whole ones); None before its first."""
    checkpoint = Path(run_dir) / CHECKPOINT_FILE
    if not checkpoint.exists():
        return None
    _, metadata = read_safetensors(checkpoint)
    return trained_epochs(metadata, checkpoint)


class Checkpointer:
    def __init__(self, run_dir: Path, world: World, model: nn.Module, optimizer: Adam, average: WeightAverage,
                 randomness: Randomness, before_write: BeforeWrite | None = None):
        self.run_dir, self.world = Path(run_dir), world
        self.model, self.optimizer, self.average, self.randomness = model, optimizer, average, randomness
        self.before_write = before_write or _nothing
        self.checkpointed: Progress | None = None  # of the checkpoint on disk, once this process wrote or read it

    @contextmanager
    def refusals_explained(self) -> Iterator[None]:
        """A run file the disk refused, as one line that says what is safe and how to go on."""
        try:
            yield
        except CannotWrite as error:
            fixed = "once the disk has room (or the folder is writable)"
            if self.checkpointed is not None:
                go_on = f"its checkpoint ({_point(self.checkpointed)}) is intact: {fixed}, continue with"
            elif (self.run_dir / CONFIG_FILE).exists():
                go_on = f"no checkpoint was written yet: {fixed}, start it again with"
            else:
                raise UserError(f"{error}; nothing was trained: {fixed}, run the same command again") from error
            raise UserError(f"{error}; {go_on} `vaekit train --resume {self.run_dir}`") from error

    @property
    def has_checkpoint(self) -> bool:
        return (self.run_dir / CHECKPOINT_FILE).exists()

    def save(self, progress: Progress) -> None:
        """checkpoint.safetensors: everything that shapes the run's future."""
        if not self.world.is_main:
            return
        self.before_write(CHECKPOINT_FILE, progress)
        extra = {"progress": asdict(progress), **self.randomness.extra()}
        save_training_state(self.run_dir / CHECKPOINT_FILE, self.model, self.optimizer,
                            self.randomness.generators(), extra, self.average)
        self.checkpointed = replace(progress)

    def record_epoch(self, record: dict[str, Any], progress: Progress, improved: bool) -> None:
        """Write an ended epoch in the safe order: its metrics line, the checkpoint that counts it, and
        then, should a kill come first, the best weights the checkpoint already holds."""
        if self.world.is_main:
            self.before_write(METRICS_FILE, progress)
            append_durably(self.run_dir / METRICS_FILE, json.dumps(record) + "\n")  # before the checkpoint counts it
        self.save(progress)
        if improved:
            self.save_best_weights(progress)

    def save_best_weights(self, progress: Progress) -> None:
        """model.safetensors: the weights the run keeps, their running average (the raw weights when off)."""
        if not self.world.is_main:
            return
        self.before_write(WEIGHTS_FILE, progress)
        with self.average.applied():
            save_weights(self.model, self.run_dir / WEIGHTS_FILE)

    def write_results(self, results: dict[str, Any], progress: Progress) -> None:
        if self.world.is_main:
            self.before_write(RESULTS_FILE, progress)
            atomic_write_text(self.run_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")

    def restore(self) -> Progress | None:
        """The progress of the run directory's checkpoint, with the model, optimizer, average and generators
        as it saved them; None for a run killed before its first checkpoint (nothing to lose, and the start
        is deterministic)."""
        saved = self.world.from_main(self._checkpoint_to_resume)
        if saved is None:
            logger.info("%s: no checkpoint yet; training starts from the beginning", self.run_dir)
            return None
        if self.world.is_main:
            return self._restore(self.run_dir / CHECKPOINT_FILE)
        with tempfile.TemporaryDirectory() as scratch:  # rank 0's file, which need not be on this rank's machine
            (Path(scratch) / CHECKPOINT_FILE).write_bytes(saved)
            return self._restore(Path(scratch) / CHECKPOINT_FILE)

    def _checkpoint_to_resume(self) -> bytes | None:
        """Rank 0's reading for `restore`: the checkpoint's bytes for the other ranks (empty for one
        process, which reads the file itself), or None where training has not written one yet."""
        remove_stale_temporaries(self.run_dir, RUN_FILES)
        checkpoint = self.run_dir / CHECKPOINT_FILE
        if checkpoint.exists():
            return checkpoint.read_bytes() if self.world.size > 1 else b""
        if (self.run_dir / WEIGHTS_FILE).exists():
            raise UserError(
                f"{checkpoint}: missing, so the run cannot continue; its best weights in {WEIGHTS_FILE} are still "
                "usable, or start the run again with --overwrite"
            )
        return None

    def _restore(self, checkpoint: Path) -> Progress:
        saved, generator_states = load_training_state(checkpoint, self.model, self.optimizer, self.average)
        try:
            progress = Progress.from_dict(saved["progress"], checkpoint)
            self.randomness.restore(saved, generator_states, progress.global_step, checkpoint)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, OverflowError) as error:
            raise UserError(
                f"{checkpoint}: damaged training state ({' '.join(repr(error).split())[:200]}); it was not written "
                "by this vaekit"
            ) from error
        self.checkpointed = progress
        return progress

    def repair(self, progress: Progress) -> None:
        """What a kill may have left half done beside the checkpoint: best weights, results, metrics."""
        if not self.world.is_main:
            return
        if progress.best_weights_in_checkpoint:
            self.save_best_weights(progress)  # mends them too, if they were damaged
        elif (self.run_dir / WEIGHTS_FILE).exists():
            read_safetensors(self.run_dir / WEIGHTS_FILE)  # damaged best weights: refused now, not after training
        if not progress.finished:
            (self.run_dir / RESULTS_FILE).unlink(missing_ok=True)  # they would describe an older state
        metrics = self.run_dir / METRICS_FILE
        if metrics.exists():
            lines = metrics.read_text().splitlines(keepends=True)[: progress.metrics_lines]
            atomic_write_text(metrics, "".join(lines))
