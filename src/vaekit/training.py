"""The training loop: Adam on −ELBO (or −IWAE), validation, early stopping and exact resume.

All randomness comes from explicit generators: the data order of epoch e is a permutation seeded
by (seed, e), and ε and dynamic binarization draw from one `noise` generator whose state is saved
in every checkpoint. So a run resumed from any checkpoint continues exactly as if never stopped.

The end of an epoch writes, in this order: a line of metrics.jsonl, checkpoint.safetensors, and
(when validation improved) model.safetensors. A kill between any two leaves a state that `resume`
repairs: metrics beyond the checkpoint are dropped, and best weights that did not reach
model.safetensors are still the checkpoint's own weights.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vaekit.checkpoint import (
    atomic_write_text, load_training_state, load_weights, remove_stale_temporaries, save_training_state,
    save_weights,
)
from vaekit.config import TrainConfig
from vaekit.data.source import Splits
from vaekit.errors import UserError
from vaekit.evaluation import dataset_elbo
from vaekit.model import VAE
from vaekit.objectives import elbo, iwae, training_loss
from vaekit.run import CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE, RUN_FILES, WEIGHTS_FILE

logger = logging.getLogger(__name__)
ORDER_SEED_STRIDE = 1_000_003  # a prime, so (seed, epoch) pairs give distinct permutation seeds
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class TrainingDiverged(UserError):
    """The loss or a gradient became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C, SIGTERM) after writing a checkpoint; says how to resume.

    A `KeyboardInterrupt`, so code that handles Ctrl-C keeps working; `exit_status` is the shell's
    convention for the signal (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_status = 128 + signal_number


@dataclass
class StopRequest:
    """Set (by a signal handler or any caller) to end training after the current step, with a checkpoint."""

    signal_number: int | None = None  # the signal that asked; None while no one has

    def request(self, signal_number: int = signal.SIGINT) -> None:
        if self.signal_number is None:
            self.signal_number = signal_number


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopRequest]:
    """Turn the first Ctrl-C or SIGTERM into a `StopRequest`, for the duration of the block.

    The second one acts as usual (Ctrl-C raises `KeyboardInterrupt` at once), so a user who does
    not want to wait for the checkpoint need not. The previous handlers come back on exit. Outside
    the main thread, where Python allows no handlers, the request is never set.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    # getsignal gives None for a handler installed outside Python; such a signal is left alone.
    previous = {number: signal.getsignal(number) for number in signals if signal.getsignal(number) is not None}

    def handle(number: int, frame: Any) -> None:
        stop.request(number)
        signal.signal(number, previous[number])
        logger.warning(
            "%s: stopping after this step to write a checkpoint; send it again to quit at once",
            SIGNAL_NAMES.get(number, f"signal {number}"),
        )

    for number in previous:
        signal.signal(number, handle)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint (as JSON) so that resume continues exactly."""

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
        return cls(**saved)

    @property
    def best_weights_in_checkpoint(self) -> bool:
        """Whether this state was saved at the end of the best epoch, so its weights are the best."""
        return self.step_in_epoch == 0 and self.best_epoch == self.epoch > 0


class Trainer:
    def __init__(
        self,
        model: VAE,
        splits: Splits,
        config: TrainConfig,
        run_dir: Path,
        device: torch.device,
        binarize_dynamically: bool = False,
        progress_bar: bool = True,
    ):
        self.model = model.to(device)
        self.splits = splits
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = device
        self.binarize_dynamically = binarize_dynamically
        self.progress_bar = progress_bar
        self.codec = splits.codec
        # uint8 pixels stay uint8 on the device and are scaled per batch: 4x less memory and bandwidth.
        self.train_x = torch.from_numpy(splits.train.x).to(device)
        if len(self.train_x) < config.batch_size:
            raise UserError(
                f"{splits.raw.description}: {len(self.train_x)} training examples are fewer than one batch "
                f"of {config.batch_size}; pass a smaller --batch-size or more data"
            )
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            self.parameters, lr=config.learning_rate, fused=device.type in ("cpu", "cuda")
        )
        self.noise = torch.Generator(device=device).manual_seed(config.seed)
        self.state = Progress()

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_x) / self.config.batch_size)

    # ----- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        extra = {"progress": asdict(self.state), "noise_device": self.device.type, "global_random": _global_random()}
        generators = {"noise": self.noise, "torch": torch.default_generator}
        save_training_state(self.run_dir / CHECKPOINT_FILE, self.model, self.optimizer, generators, extra)

    def resume(self) -> None:
        """Continue from the run directory's checkpoint, repairing what a kill may have left half done.

        Metrics written after the checkpoint are dropped; best weights the checkpoint knows of but
        model.safetensors missed are written; a run killed before its first checkpoint starts over.
        """
        remove_stale_temporaries(self.run_dir, RUN_FILES)
        checkpoint = self.run_dir / CHECKPOINT_FILE
        if checkpoint.exists():
            self._restore(checkpoint)
        elif (self.run_dir / WEIGHTS_FILE).exists():
            raise UserError(
                f"{checkpoint}: missing, so the run cannot continue; its best weights in {WEIGHTS_FILE} are still "
                "usable, or start the run again with --overwrite"
            )
        else:  # killed before its first checkpoint: nothing to lose, and the start is deterministic
            logger.info("%s: no checkpoint yet; training starts from the beginning", self.run_dir)
        if self.state.best_weights_in_checkpoint:
            save_weights(self.model, self.run_dir / WEIGHTS_FILE)
        # The epoch budget may have been raised on the command line: a finished run can go on.
        self.state.finished = self._should_stop()
        if not self.state.finished:
            (self.run_dir / RESULTS_FILE).unlink(missing_ok=True)  # they would describe an older state
        metrics = self.run_dir / METRICS_FILE
        if metrics.exists():
            lines = metrics.read_text().splitlines(keepends=True)[: self.state.metrics_lines]
            atomic_write_text(metrics, "".join(lines))

    def _restore(self, checkpoint: Path) -> None:
        saved, generator_states = load_training_state(checkpoint, self.model, self.optimizer)
        try:
            self.state = Progress.from_dict(saved["progress"], checkpoint)
            noise_device, global_random = saved["noise_device"], saved["global_random"]
            torch.default_generator.set_state(generator_states["torch"])
            _restore_global_random(global_random)
            if noise_device == self.device.type:
                self.noise.set_state(generator_states["noise"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise UserError(f"{checkpoint}: damaged training state ({error!r}); it was not written by this vaekit") from error
        if noise_device != self.device.type:
            # Generators of different devices have different states: keep going, but not bit for bit.
            self.noise.manual_seed(self.config.seed * ORDER_SEED_STRIDE + self.state.global_step)
            logger.warning(
                "%s: written on %s, resumed on %s: training continues, but not bit for bit as it would have there",
                checkpoint, noise_device, self.device.type,
            )

    def _should_stop(self) -> bool:
        patience = self.config.patience
        out_of_patience = patience is not None and self.state.epochs_without_improvement >= patience
        return self.state.epoch >= self.config.epochs or out_of_patience

    # ----- the loop -----------------------------------------------------------------------------
    def beta(self) -> float:
        """The KL weight now: β, ramped linearly from 0 over the warm-up epochs (per step)."""
        warmup_steps = self.config.warmup_epochs * self.steps_per_epoch
        if warmup_steps == 0:
            return self.config.beta
        return self.config.beta * min(1.0, self.state.global_step / warmup_steps)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * ORDER_SEED_STRIDE + epoch)
        return torch.randperm(len(self.train_x), generator=generator).to(self.device)

    def train_step(self, x: torch.Tensor) -> torch.Tensor:
        """One Adam step on a batch (B, *event_shape) in model units; returns the detached terms' sums."""
        if self.binarize_dynamically:
            x = torch.bernoulli(x, generator=self.noise)
        if self.config.objective == "iwae":
            terms = iwae(self.model, x, self.config.iwae_samples, self.noise)
        else:
            terms = elbo(self.model, x, self.config.mc_samples, self.noise)
        loss = training_loss(terms, self.beta(), self.config.free_bits, self.config.objective)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._check_finite(loss)
        self.optimizer.step()
        return torch.stack([terms.bound.sum(), terms.reconstruction.sum(), terms.kl.sum()]).detach()

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop before a NaN or infinite loss or gradient reaches the weights.

        A gradient's sum is NaN or infinite when any of its entries is (or when they are absurdly
        large, which is divergence too); the loss and the sums are checked together, in the one host
        sync per step. On CPU they cost ~1.5-2% of a step (digits, Fashion-MNIST); ∞-norms cost 15-25%.
        """
        with_grads = [p for p in self.parameters if p.grad is not None]
        sums = [p.grad.sum() for p in with_grads]
        if bool(torch.isfinite(torch.stack([loss.detach(), *sums])).all()):
            return
        if not torch.isfinite(loss):
            self._diverged("the loss")
        names = {id(p): name for name, p in self.model.named_parameters()}
        culprit = next(p for p, total in zip(with_grads, sums) if not torch.isfinite(total))
        self._diverged(f"the gradient of {names[id(culprit)]}")

    def _diverged(self, what: str) -> None:
        rate = self.config.learning_rate
        epoch, step, steps = self.state.epoch + 1, self.state.step_in_epoch + 1, self.steps_per_epoch
        where = f"at epoch {epoch}, step {step} of {steps}" if step <= steps else f"at the end of epoch {epoch}"
        if (self.run_dir / CHECKPOINT_FILE).exists():
            kept = f"the last good checkpoint is kept in {self.run_dir}, and"
        else:
            kept = "no checkpoint was written yet, so"
        raise TrainingDiverged(
            f"training diverged: {what} became NaN or infinite {where}; the likely cause is a learning rate "
            f"too high for this model and data ({rate:g}). Nothing was retried: {kept} "
            f"`vaekit train --resume {self.run_dir} --learning-rate {rate / 10:g}` continues with a lower one"
        )

    def run_epoch(self, stop: StopRequest | None = None) -> None:
        state, batch = self.state, self.config.batch_size
        order = self.epoch_order(state.epoch)
        totals = torch.tensor(state.totals, dtype=torch.float64, device=self.device)
        started = time.perf_counter() - state.epoch_seconds
        last_checkpoint = time.perf_counter()
        with tqdm(
            total=self.steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}",
            disable=not self.progress_bar, leave=False, dynamic_ncols=True,
        ) as bar:
            for step in range(state.step_in_epoch, self.steps_per_epoch):
                index = order[step * batch : (step + 1) * batch]
                sums = self.train_step(self.codec.to_model(self.train_x[index]))
                totals += sums.double()
                state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
                state.examples_in_epoch += len(index)
                if step % 20 == 0 and self.progress_bar:
                    bar.set_postfix(loss=f"{-sums[0].item() / len(index):.2f}", refresh=False)
                bar.update()
                if stop is not None and stop.signal_number is not None:
                    self._save_mid_epoch(totals, started)
                    self._interrupted(stop.signal_number)
                if self._checkpoint_due(last_checkpoint) and state.step_in_epoch < self.steps_per_epoch:
                    self._save_mid_epoch(totals, started)
                    last_checkpoint = time.perf_counter()
        state.totals, state.epoch_seconds = totals.tolist(), time.perf_counter() - started

    def _save_mid_epoch(self, totals: torch.Tensor, started: float) -> None:
        self.state.totals, self.state.epoch_seconds = totals.tolist(), time.perf_counter() - started
        self.save_checkpoint()

    def _interrupted(self, signal_number: int) -> None:
        state = self.state
        if state.step_in_epoch == 0:
            where = f"after epoch {state.epoch}"
        else:
            where = f"at epoch {state.epoch + 1}, step {state.step_in_epoch} of {self.steps_per_epoch}"
        raise TrainingInterrupted(
            f"stopped by {SIGNAL_NAMES.get(signal_number, f'signal {signal_number}')} {where}; the checkpoint "
            f"holds everything. Continue exactly where it stopped with: vaekit train --resume {self.run_dir}",
            signal_number,
        )

    def _checkpoint_due(self, last_checkpoint: float) -> bool:
        every_steps, every_minutes = self.config.checkpoint_every_steps, self.config.checkpoint_every_minutes
        if every_steps and self.state.global_step % every_steps == 0:
            return True
        return bool(every_minutes) and time.perf_counter() - last_checkpoint >= 60 * every_minutes

    def end_epoch(self) -> dict[str, Any]:
        """Validate, record metrics, decide on early stopping, checkpoint, and keep the best weights."""
        state = self.state
        record = self._epoch_record()
        score = record["val_elbo"] if "val_elbo" in record else record["train_elbo"]
        if not math.isfinite(score):
            self._diverged("the validation ELBO")
        improved = score > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.epochs_without_improvement = score, state.epoch + 1, 0
        else:
            state.epochs_without_improvement += 1
        with open(self.run_dir / METRICS_FILE, "a") as metrics:
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            os.fsync(metrics.fileno())  # on disk before the checkpoint that counts it
        state.train_seconds += state.epoch_seconds
        state.metrics_lines += 1
        state.epoch += 1
        state.step_in_epoch, state.examples_in_epoch, state.epoch_seconds = 0, 0, 0.0
        state.totals = [0.0, 0.0, 0.0]
        state.finished = self._should_stop()
        self.save_checkpoint()
        if improved:  # after the checkpoint, which holds these same weights should a kill come first
            save_weights(self.model, self.run_dir / WEIGHTS_FILE)
        return record

    def _epoch_record(self) -> dict[str, Any]:
        """The metrics.jsonl line of the epoch just trained: training means and validation figures."""
        state = self.state
        train = [value / state.examples_in_epoch for value in state.totals]
        record: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "step": state.global_step,
            "beta": self.beta(),
            "train_elbo": train[0],
            "train_reconstruction": train[1],
            "train_kl": train[2],
        }
        if len(self.splits.validation):
            validation = dataset_elbo(self.model, self.splits.validation.x, self.codec, seed=self.config.seed)
            record.update({f"val_{key}": value for key, value in validation.items()})
        record["seconds"] = state.epoch_seconds
        record["images_per_second"] = state.examples_in_epoch / max(state.epoch_seconds, 1e-9)
        return record

    def _worth_a_line(self, record: dict[str, Any]) -> bool:
        """Every epoch of a short run; of a long one, every k-th and the last."""
        every = max(1, self.config.epochs // EPOCH_LINES)
        return record["epoch"] % every == 0 or self.state.finished

    def fit(self, stop: StopRequest | None = None) -> list[dict[str, Any]]:
        """Train until the epochs run out or early stopping ends it; returns this call's epoch records.

        If `stop` is requested, the current step finishes, a checkpoint is written and
        `TrainingInterrupted` is raised.
        """
        records = []
        self.model.train()
        while not self.state.finished:
            self.run_epoch(stop)
            record = self.end_epoch()
            records.append(record)
            if self.progress_bar:
                if self._worth_a_line(record):
                    tqdm.write(_describe(record))
            if stop is not None and stop.signal_number is not None and not self.state.finished:
                self._interrupted(stop.signal_number)
        return records


def _global_random() -> dict[str, Any]:
    """Python's and NumPy's global generator states, as JSON. vaekit draws from neither, but code
    around it may, and a resumed run should find them as the interrupted one left them."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), position, has_gauss, cached_gauss]}


def _restore_global_random(saved: dict[str, Any]) -> None:
    version, python_state, gauss_next = saved["python"]
    random.setstate((version, tuple(python_state), gauss_next))
    kind, keys, position, has_gauss, cached_gauss = saved["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gauss))


EPOCH_LINES = 25  # long runs print about this many epoch lines, not one per epoch


def _describe(record: dict[str, Any]) -> str:
    text = f"epoch {record['epoch']:>3}  train -ELBO {-record['train_elbo']:.2f}"
    if "val_elbo" in record:
        text += f"  val -ELBO {-record['val_elbo']:.2f} (recon {-record['val_reconstruction']:.2f}, KL {record['val_kl']:.2f})"
    return text + f"  {record['images_per_second']:,.0f} img/s"


def write_results(trainer: Trainer) -> dict[str, Any]:
    """Test figures of the best weights, written to results.json."""
    load_weights(trainer.model, trainer.run_dir / WEIGHTS_FILE)
    test = dataset_elbo(trainer.model, trainer.splits.test.x, trainer.codec, seed=trainer.config.seed)
    results = {
        "best_epoch": trainer.state.best_epoch,
        "epochs_trained": trainer.state.epoch,
        "train_seconds": trainer.state.train_seconds,
        **{f"test_{key}": value for key, value in test.items()},
        "test_examples": len(trainer.splits.test),
    }
    atomic_write_text(trainer.run_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    return results
