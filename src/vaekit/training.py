"""The training loop: Adam on −ELBO (or −IWAE), validation, early stopping and exact resume.

All randomness comes from explicit generators: the data order of epoch e is a permutation seeded
by (seed, e), and ε and dynamic binarization draw from one `noise` generator whose state is saved
in every checkpoint. So a run resumed from any checkpoint continues exactly as if never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaekit.checkpoint import (
    atomic_write_text, load_training_state, load_weights, save_training_state, save_weights,
)
from vaekit.config import TrainConfig
from vaekit.data.source import Splits
from vaekit.errors import UserError
from vaekit.evaluation import dataset_elbo
from vaekit.model import VAE
from vaekit.objectives import elbo, iwae, training_loss
from vaekit.run import CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE, WEIGHTS_FILE

logger = logging.getLogger(__name__)
ORDER_SEED_STRIDE = 1_000_003  # a prime, so (seed, epoch) pairs give distinct permutation seeds


class TrainingDiverged(UserError):
    """The loss or a gradient became NaN or infinite."""


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint (as JSON) so that resume continues exactly."""

    epoch: int = 0  # the epoch being trained (0-based)
    step_in_epoch: int = 0  # batches of `epoch` already done
    global_step: int = 0
    totals: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # Σ bound, recon, KL this epoch
    examples_in_epoch: int = 0
    epoch_seconds: float = 0.0  # time spent in `epoch` before the last checkpoint
    best_score: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    metrics_lines: int = 0  # lines of metrics.jsonl that belong to this state
    finished: bool = False
    train_seconds: float = 0.0


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
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, fused=device.type in ("cpu", "cuda")
        )
        self.noise = torch.Generator(device=device).manual_seed(config.seed)
        self.state = Progress()

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_x) / self.config.batch_size)

    # ----- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        save_training_state(
            self.run_dir / CHECKPOINT_FILE, self.model, self.optimizer, {"noise": self.noise}, asdict(self.state)
        )

    def resume(self) -> None:
        """Continue from the run directory's checkpoint, dropping metrics written after it."""
        saved = load_training_state(self.run_dir / CHECKPOINT_FILE, self.model, self.optimizer, {"noise": self.noise})
        self.state = Progress(**saved)
        # The epoch budget may have been raised on the command line: a finished run can go on.
        self.state.finished = self._should_stop()
        metrics = self.run_dir / METRICS_FILE
        if metrics.exists():
            lines = metrics.read_text().splitlines(keepends=True)[: self.state.metrics_lines]
            atomic_write_text(metrics, "".join(lines))

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
        if not torch.isfinite(loss):
            self._diverged("the loss")
        self.optimizer.step()
        return torch.stack([terms.bound.sum(), terms.reconstruction.sum(), terms.kl.sum()]).detach()

    def _diverged(self, what: str) -> None:
        raise TrainingDiverged(
            f"training diverged: {what} became NaN or infinite at epoch {self.state.epoch + 1}, "
            f"step {self.state.step_in_epoch + 1} (learning_rate = {self.config.learning_rate:g}); "
            f"lower --learning-rate. The last good checkpoint is kept in {self.run_dir / CHECKPOINT_FILE}"
        )

    def run_epoch(self) -> None:
        state, batch = self.state, self.config.batch_size
        order = self.epoch_order(state.epoch)
        totals = torch.tensor(state.totals, dtype=torch.float64, device=self.device)
        started = time.perf_counter() - state.epoch_seconds
        bar = tqdm(
            total=self.steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}",
            disable=not self.progress_bar, leave=False, dynamic_ncols=True,
        )
        last_checkpoint = time.perf_counter()
        for step in range(state.step_in_epoch, self.steps_per_epoch):
            index = order[step * batch : (step + 1) * batch]
            sums = self.train_step(self.codec.to_model(self.train_x[index]))
            totals += sums.double()
            state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
            state.examples_in_epoch += len(index)
            if step % 20 == 0 and self.progress_bar:
                bar.set_postfix(loss=f"{-sums[0].item() / len(index):.2f}", refresh=False)
            bar.update()
            if self._checkpoint_due(last_checkpoint) and state.step_in_epoch < self.steps_per_epoch:
                state.totals, state.epoch_seconds = totals.tolist(), time.perf_counter() - started
                self.save_checkpoint()
                last_checkpoint = time.perf_counter()
        bar.close()
        state.totals, state.epoch_seconds = totals.tolist(), time.perf_counter() - started

    def _checkpoint_due(self, last_checkpoint: float) -> bool:
        every_steps, every_minutes = self.config.checkpoint_every_steps, self.config.checkpoint_every_minutes
        if every_steps and self.state.global_step % every_steps == 0:
            return True
        return bool(every_minutes) and time.perf_counter() - last_checkpoint >= 60 * every_minutes

    def end_epoch(self) -> dict[str, Any]:
        """Validate, record metrics, keep the best weights, and decide on early stopping."""
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
        split = self.splits.validation if len(self.splits.validation) else None
        if split is not None:
            validation = dataset_elbo(self.model, split.x, self.codec, seed=self.config.seed)
            record.update({f"val_{key}": value for key, value in validation.items()})
        record["seconds"] = state.epoch_seconds
        record["images_per_second"] = state.examples_in_epoch / max(state.epoch_seconds, 1e-9)
        score = record["val_elbo"] if split is not None else record["train_elbo"]
        if not math.isfinite(score):
            self._diverged("the validation ELBO")
        if score > state.best_score:
            state.best_score, state.best_epoch, state.epochs_without_improvement = score, state.epoch + 1, 0
            save_weights(self.model, self.run_dir / WEIGHTS_FILE)
        else:
            state.epochs_without_improvement += 1
        with open(self.run_dir / METRICS_FILE, "a") as metrics:
            metrics.write(json.dumps(record) + "\n")
        state.train_seconds += state.epoch_seconds
        state.metrics_lines += 1
        state.epoch += 1
        state.step_in_epoch, state.examples_in_epoch, state.epoch_seconds = 0, 0, 0.0
        state.totals = [0.0, 0.0, 0.0]
        state.finished = self._should_stop()
        self.save_checkpoint()
        return record

    def fit(self) -> list[dict[str, Any]]:
        """Train until the epochs run out or early stopping ends it; returns this call's epoch records."""
        records = []
        self.model.train()
        while not self.state.finished:
            self.run_epoch()
            record = self.end_epoch()
            records.append(record)
            if self.progress_bar:
                tqdm.write(_describe(record))
        return records


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
