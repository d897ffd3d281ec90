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
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vaekit.training.averaging import WeightAverage
from vaekit.runs.checkpoint import (
    atomic_write_text, load_training_state, load_weights, remove_stale_temporaries, save_training_state,
    save_weights,
)
from vaekit.config import TrainConfig
from vaekit.runtime.cpu import flush_denormals, keep_freed_memory, torch_threads
from vaekit.training.cuda_graph import GraphedStep, graphs_available
from vaekit.data.source import Splits
from vaekit.data.streaming import is_streamed, stored_batches
from vaekit.runtime.world import SINGLE_PROCESS, ShardObjective, World, sharded_elbo
from vaekit.errors import UserError
from vaekit.evaluation.importance import EVAL_BATCH, dataset_elbo
from vaekit.model.vae import VAE
from vaekit.model.objectives import BoundTerms, bound_figures, elbo, iwae, training_loss
from vaekit.training.optim import Adam
from vaekit.runs.directory import CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE, RUN_FILES, WEIGHTS_FILE

logger = logging.getLogger(__name__)
MEAN_EXAMPLES = 512  # for the decoder's starting output: enough for a mean image, quick to decode
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
        world: World = SINGLE_PROCESS,
        workers: int = 0,
    ):
        """`world` is this process's place in a torchrun launch (vaekit.runtime.world); `workers` the
        processes that decode a streamed image folder (vaekit.data.streaming)."""
        self.model = model.to(device)
        self.splits = splits
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = device
        self.binarize_dynamically = binarize_dynamically
        self.world, self.workers = world, workers
        self.progress_bar = progress_bar and world.is_main
        self.codec = splits.codec
        # uint8 pixels stay uint8 on the device and are scaled per batch: 4x less memory and bandwidth.
        # A folder too large for memory stays on disk and comes batch by batch.
        self.streamed = is_streamed(splits.train.x)
        self.train_x = splits.train.x if self.streamed else torch.from_numpy(splits.train.x).to(device)
        if len(self.train_x) < config.batch_size:
            raise UserError(
                f"{splits.raw.description}: {len(self.train_x)} training examples are fewer than one batch "
                f"of {config.batch_size}; pass a smaller --batch-size or more data"
            )
        if config.output_bias_from_data:
            self.model.start_output_at(self._training_mean())
        self.average = WeightAverage(self.model, config.weight_average)
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = Adam(self.parameters, lr=config.learning_rate, betas=(0.9, config.adam_beta2))
        self.noise = torch.Generator(device=device).manual_seed(config.seed)
        self.state = Progress()
        self.data_parallel = self._data_parallel() if world.size > 1 else None
        self.bf16 = config.precision == "bf16" and device.type == "cuda"
        if config.precision == "bf16" and not self.bf16:
            logger.warning("precision = 'bf16' applies to CUDA GPUs; training on %s stays float32", device.type)
        # Full batches replay one captured CUDA graph (vaekit.training.cuda_graph), captured at the first of them.
        self.use_graphs = config.cuda_graphs and device.type == "cuda" and world.size == 1
        if self.use_graphs and not graphs_available():
            logger.info("this torch cannot capture a step that draws from its own generator; no CUDA graphs")
            self.use_graphs = False
        if self.use_graphs and any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
            # Their capture failed on an H100 (torch 2.11), for a reason not yet found: they launch eagerly.
            logger.info("convolutional networks train without CUDA graphs")
            self.use_graphs = False
        self.graphed: GraphedStep | None = None
        self._graph_gradients: list[torch.Tensor] = []  # the parameters whose gradient sums the graph checks

    def _data_parallel(self) -> DistributedDataParallel:
        """The loss of this rank's shard, wrapped so that backward all-reduces the gradients."""
        if self.config.batch_size < self.world.size:
            raise UserError(
                f"batch_size = {self.config.batch_size} is the global batch, shared by {self.world.size} processes; "
                f"pass a --batch-size of at least {self.world.size}"
            )
        objective = ShardObjective(self.model, self.world, self.config.objective, self.config.free_bits)
        return DistributedDataParallel(objective, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_x) / self.config.batch_size)

    def _training_mean(self) -> torch.Tensor:
        """The mean of the first MEAN_EXAMPLES training examples (a random sample: the split is shuffled) in
        model units (*event_shape), a batch at a time; the same numbers whether the data is in memory or
        streamed from disk (where decoding all of it would cost an epoch)."""
        count, size = min(len(self.train_x), MEAN_EXAMPLES), self.config.batch_size
        starts = range(0, count, size)
        if self.streamed:
            indices = (np.arange(start, min(start + size, count)) for start in starts)
            chunks = (stored.to(self.device) for stored in stored_batches(self.train_x, indices, self.workers))
        else:
            chunks = (self.train_x[start : min(start + size, count)] for start in starts)
        # Float64 sums on the CPU: MPS has no float64.
        total = sum(self.codec.to_model(stored).sum(0).to("cpu", torch.float64) for stored in chunks)
        return (total / count).to(self.device, torch.float32)

    # ----- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if not self.world.is_main:
            return  # every rank holds the same state; one writes it
        extra = {"progress": asdict(self.state), "noise_device": self.device.type, "global_random": _global_random()}
        generators = {"noise": self.noise, "torch": torch.default_generator}
        save_training_state(self.run_dir / CHECKPOINT_FILE, self.model, self.optimizer, generators, extra, self.average)

    def resume(self) -> None:
        """Continue from the run directory's checkpoint, repairing what a kill may have left half done.

        Metrics written after the checkpoint are dropped; best weights the checkpoint knows of but
        model.safetensors missed are written; a run killed before its first checkpoint starts over.
        """
        checkpoint = self.run_dir / CHECKPOINT_FILE
        saved = self.world.from_main(self._checkpoint_to_resume)
        if saved is None:  # killed before its first checkpoint: nothing to lose, and the start is deterministic
            logger.info("%s: no checkpoint yet; training starts from the beginning", self.run_dir)
        elif self.world.is_main:
            self._restore(checkpoint)
        else:  # rank 0's file, which need not be on this rank's machine
            with tempfile.TemporaryDirectory() as scratch:
                (Path(scratch) / CHECKPOINT_FILE).write_bytes(saved)
                self._restore(Path(scratch) / CHECKPOINT_FILE)
        # The epoch budget may have been raised on the command line: a finished run can go on.
        self.state.finished = self._should_stop()
        if self.world.is_main:
            self._repair_run_files()

    def _checkpoint_to_resume(self) -> bytes | None:
        """Rank 0's reading for `resume`: the checkpoint's bytes for the other ranks (empty for one
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

    def _repair_run_files(self) -> None:
        """What a kill may have left half done beside the checkpoint: best weights, results, metrics."""
        if self.state.best_weights_in_checkpoint:
            self._save_best_weights()
        if not self.state.finished:
            (self.run_dir / RESULTS_FILE).unlink(missing_ok=True)  # they would describe an older state
        metrics = self.run_dir / METRICS_FILE
        if metrics.exists():
            lines = metrics.read_text().splitlines(keepends=True)[: self.state.metrics_lines]
            atomic_write_text(metrics, "".join(lines))

    def _restore(self, checkpoint: Path) -> None:
        saved, generator_states = load_training_state(checkpoint, self.model, self.optimizer, self.average)
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

    def learning_rate(self) -> float:
        """Adam's step size now: constant, or a half cosine from learning_rate to 0 over the epoch budget (per
        step). A function of the step alone, so a resumed run continues the schedule exactly."""
        rate = self.config.learning_rate
        if self.config.lr_schedule == "constant":
            return rate
        progress = min(1.0, self.state.global_step / (self.config.epochs * self.steps_per_epoch))
        return rate * 0.5 * (1.0 + math.cos(math.pi * progress))

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * ORDER_SEED_STRIDE + epoch)
        order = torch.randperm(len(self.train_x), generator=generator)
        return order if self.streamed else order.to(self.device)  # streamed files are picked on the CPU

    def _batches(self, order: torch.Tensor, first_step: int) -> Iterator[tuple[int, torch.Tensor]]:
        """From step `first_step` of an epoch on: each global batch's size, and this rank's shard of
        it (all of it for one process) in stored form on the device."""
        batch, world = self.config.batch_size, self.world
        starts = range(first_step * batch, len(order), batch)
        shards = (order[start : start + batch][world.shard(min(batch, len(order) - start))] for start in starts)
        if not self.streamed:
            for start, index in zip(starts, shards):
                # index_select copies whole rows: 20 µs for 128 Fashion-MNIST images on a CPU, 130 µs by t[index].
                yield min(batch, len(order) - start), self.train_x.index_select(0, index)
            return
        decoded = stored_batches(self.train_x, shards, self.workers, pin_memory=self.device.type == "cuda")
        for start, stored in zip(starts, decoded):
            yield min(batch, len(order) - start), stored.to(self.device, non_blocking=True)

    def train_step(self, x: torch.Tensor) -> torch.Tensor:
        """One Adam step on a batch (B, *event_shape) in model units; returns the detached terms' sums."""
        if self.use_graphs and len(x) == self.config.batch_size:
            return self._graphed_step(x)
        loss, terms = self._forward_backward(x, self.beta())
        self._check_finite(loss)
        self.optimizer.step()
        self.average.update(self.state.global_step + 1)
        # Gradients are freed at once rather than before the next step: validation and checkpoints between
        # epochs then reuse their memory (5 MB of the reference network) instead of adding to the peak.
        self.optimizer.zero_grad(set_to_none=True)
        return _record(terms)

    def _forward_backward(
        self, x: torch.Tensor, beta: float | torch.Tensor, autocast_cache: bool = True
    ) -> tuple[torch.Tensor, BoundTerms]:
        """The loss of a batch and its terms, with the gradients computed."""
        if self.binarize_dynamically:
            x = torch.bernoulli(x, generator=self.noise)
        with self._precision(autocast_cache):
            if self.config.objective == "iwae":
                terms = iwae(self.model, x, self.config.iwae_samples, self.noise)
            else:
                terms = elbo(self.model, x, self.config.mc_samples, self.noise)
        loss = training_loss(terms, beta, self.config.free_bits, self.config.objective)
        loss.backward()
        return loss, terms

    def _graphed_step(self, x: torch.Tensor) -> torch.Tensor:
        """`train_step` by replaying the captured step: the same numbers, one launch instead of ~100."""
        if self.graphed is None:
            self.optimizer.init_state()  # inside the graph, Adam's state must already exist
            state = [*self.parameters, *(t for s in self.optimizer.state.values() for t in s.values())]
            noise = self.noise.get_state()
            try:
                self.graphed = GraphedStep(self._graph_body, x, self.noise, state,
                                           lambda: self.optimizer.zero_grad(set_to_none=True))
            except RuntimeError as error:  # weights and Adam's state are as they were: train eagerly
                logger.warning("CUDA graph capture failed (%s); training goes on without CUDA graphs "
                               "(--no-cuda-graphs avoids the attempt)", str(error).splitlines()[0])
                self.use_graphs = False
                # A failed capture can leave the generator registered with it unusable: a fresh one, same state.
                self.noise = torch.Generator(device=self.device)
                self.noise.set_state(noise)
                return self.train_step(x)
        found_inf, checks, sums = self.graphed.replay(x, self.beta(), self.optimizer.param_groups[0]["lr"])
        if found_inf.item():  # the graph skipped Adam's update: nothing reached the weights
            self._diverged(self._non_finite(checks[0], self._graph_gradients, checks[1:]))
        self.average.update(self.state.global_step + 1)
        return sums

    def _graph_body(
        self, x: torch.Tensor, beta: torch.Tensor, learning_rate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step as the graph holds it, returning (found_inf, the checked values, the sums for the record):
        `_check_finite` becomes a flag that makes Adam skip the update, read by the host after the replay."""
        loss, terms = self._forward_backward(x, beta, autocast_cache=False)  # a graph cannot keep autocast's cache
        self._graph_gradients, checks = self._finite_checks(loss)
        found_inf = (~torch.isfinite(checks).all()).to(torch.float32)
        self.optimizer.step(lr=learning_rate, found_inf=found_inf)
        return found_inf, checks, _record(terms)

    def _precision(self, cache: bool = True) -> AbstractContextManager:
        """bf16 autocast where asked on a GPU: it reaches the networks' products only, as the bounds cast
        their outputs back to float32."""
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache) if self.bf16 else nullcontext()

    def shard_step(self, x: torch.Tensor, global_batch: int) -> torch.Tensor:
        """`train_step` for this rank's shard x (b, *event_shape) of a global batch of `global_batch`
        examples; returns the shard's sums. ε (and the binarization's uniforms) are drawn for the
        whole batch and sliced, and DDP all-reduces the gradients (vaekit.runtime.world)."""
        shard = self.world.shard(global_batch)
        if self.binarize_dynamically:  # on the CPU, torch.bernoulli's draw bit for bit
            uniforms = torch.rand((global_batch, *x.shape[1:]), generator=self.noise, device=x.device, dtype=x.dtype)
            x = (uniforms[shard] < x).to(x.dtype)
        samples = self.config.iwae_samples if self.config.objective == "iwae" else self.config.mc_samples
        eps = torch.randn(
            (samples, global_batch, self.model.latent_dim), generator=self.noise, device=x.device, dtype=x.dtype
        )
        with self._precision():
            loss, sums = self.data_parallel(x, eps[:, shard], global_batch, self.beta())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._check_finite_everywhere(loss)
        self.optimizer.step()
        self.average.update(self.state.global_step + 1)
        return sums

    def _check_finite_everywhere(self, loss: torch.Tensor) -> None:
        """`_check_finite`, agreed by all ranks: a loss that is NaN on one rank stops them all."""
        finite = torch.isfinite(self._finite_checks(loss)[1]).all()
        if self.world.all_reduce_max((~finite).to(torch.float32).reshape(1)).item() == 0:
            return
        self._check_finite(loss)  # names the loss or gradient where this rank saw it
        self._diverged("the loss of another process's shard")

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop before a NaN or infinite loss or gradient reaches the weights.

        A gradient's sum is NaN or infinite when any of its entries is (or when they are absurdly
        large, which is divergence too); the loss and the sums are checked together, in the one host
        sync per step. On CPU they cost about 5% of a reference-network step on Fashion-MNIST at batch 128
        and 2 threads (185-250 µs of 3.9-4.1 ms: the large gradients have left the cache); ∞-norms cost 15-25%.
        """
        with_grads, checks = self._finite_checks(loss)
        if bool(torch.isfinite(checks).all()):
            return
        self._diverged(self._non_finite(checks[0], with_grads, checks[1:]))

    def _finite_checks(self, loss: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The parameters with gradients, and the values the finite check looks at: the loss, then the sum
        of each of their gradients, stacked."""
        with_grads = [p for p in self.parameters if p.grad is not None]
        return with_grads, torch.stack([loss.detach(), *(p.grad.sum() for p in with_grads)])

    def _non_finite(self, loss: torch.Tensor, with_grads: list[torch.Tensor], sums: Any) -> str:
        """What became NaN or infinite: the loss, or the first parameter whose gradient sum did."""
        if not torch.isfinite(loss):
            return "the loss"
        names = {id(p): name for name, p in self.model.named_parameters()}
        culprit = next(p for p, total in zip(with_grads, sums) if not torch.isfinite(total))
        return f"the gradient of {names[id(culprit)]}"

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
        state = self.state
        order = self.epoch_order(state.epoch)
        batches = self._batches(order, state.step_in_epoch)
        # Rank 0 carries the epoch's sums so far (the checkpoint's); other ranks add theirs from zero.
        totals = torch.tensor(state.totals if self.world.is_main else [0.0] * 3, dtype=torch.float64, device=self.device)
        started = time.perf_counter() - state.epoch_seconds
        last_checkpoint = time.perf_counter()
        with tqdm(
            total=self.steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}",
            disable=not self.progress_bar, leave=False, dynamic_ncols=True,
        ) as bar:
            for step in range(state.step_in_epoch, self.steps_per_epoch):
                examples, stored = next(batches)
                x = self.codec.to_model(stored)
                for group in self.optimizer.param_groups:
                    group["lr"] = self.learning_rate()
                sums = self.train_step(x) if self.data_parallel is None else self.shard_step(x, examples)
                totals += sums.double()
                state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
                state.examples_in_epoch += examples
                if step % 20 == 0 and self.progress_bar:
                    bar.set_postfix(loss=f"{-sums[0].item() / max(len(x), 1):.2f}", refresh=False)
                bar.update()
                signal_number, checkpoint_due = self._after_step(stop, last_checkpoint)
                if signal_number is not None:
                    self._save_mid_epoch(totals, started)
                    self._interrupted(signal_number)
                if checkpoint_due and state.step_in_epoch < self.steps_per_epoch:
                    self._save_mid_epoch(totals, started)
                    last_checkpoint = time.perf_counter()
        state.totals, state.epoch_seconds = self._epoch_totals(totals), time.perf_counter() - started

    def _save_mid_epoch(self, totals: torch.Tensor, started: float) -> None:
        self.state.totals, self.state.epoch_seconds = self._epoch_totals(totals), time.perf_counter() - started
        self.save_checkpoint()

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

    def _after_step(self, stop: StopRequest | None, last_checkpoint: float) -> tuple[int | None, bool]:
        """The signal that asks training to stop (None while none has), and whether a checkpoint is
        due. All ranks decide together: a signal, or the clock, may reach them at different steps."""
        signal_number = stop.signal_number if stop is not None else None
        due = self._checkpoint_due(last_checkpoint)
        if self.world.size == 1:
            return signal_number, due
        agreed = self.world.all_reduce_max(torch.tensor([signal_number or 0, int(due)], device=self.device))
        signal_number, due = agreed.tolist()
        return signal_number or None, bool(due)

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
        with self.average.applied():  # validation sees the model the run keeps
            record = self._epoch_record()
        # The bound the run optimizes: the IWAE bound of an IWAE run, the ELBO otherwise.
        name = "iwae" if self.config.objective == "iwae" else "elbo"
        score = record[f"val_{name}"] if f"val_{name}" in record else record[f"train_{name}"]
        if not math.isfinite(score):
            self._diverged("the validation IWAE bound" if name == "iwae" else "the validation ELBO")
        improved = score > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.epochs_without_improvement = score, state.epoch + 1, 0
        else:
            state.epochs_without_improvement += 1
        if self.world.is_main:
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
        if improved and self.world.is_main:  # after the checkpoint, which holds these weights should a kill come first
            self._save_best_weights()
        return record

    def _save_best_weights(self) -> None:
        """model.safetensors: the weights the run keeps, their running average (the raw weights when off)."""
        with self.average.applied():
            save_weights(self.model, self.run_dir / WEIGHTS_FILE)

    def _epoch_record(self) -> dict[str, Any]:
        """The metrics.jsonl line of the epoch just trained: training means and validation figures."""
        state = self.state
        train = [value / state.examples_in_epoch for value in state.totals]
        record: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "step": state.global_step,
            "beta": self.beta(),
            "learning_rate": self.learning_rate(),
        }
        # An IWAE run's sums hold its bound; its ELBO is of the same K samples (`bound_figures`).
        figures = bound_figures(torch.tensor(train, dtype=torch.float64), self.config.objective == "iwae")
        record.update({f"train_{key}": value for key, value in figures.items()})
        if len(self.splits.validation):
            validation = self.split_elbo(self.splits.validation.x)
            record.update({f"val_{key}": value for key, value in validation.items()})
        record["seconds"] = state.epoch_seconds
        record["images_per_second"] = state.examples_in_epoch / max(state.epoch_seconds, 1e-9)
        return record

    def split_elbo(self, stored: Any) -> dict[str, float]:
        """`dataset_elbo` of a split, each rank taking a shard of every batch (and decoding a streamed
        folder batch by batch): the figures one process computes from memory."""
        iwae_samples = self.config.iwae_samples if self.config.objective == "iwae" else None
        if self.world.size == 1 and not is_streamed(stored):
            return dataset_elbo(self.model, stored, self.codec, seed=self.config.seed, iwae_samples=iwae_samples)
        counts = [min(EVAL_BATCH, len(stored) - start) for start in range(0, len(stored), EVAL_BATCH)]
        shards = (
            np.arange(start, start + count)[self.world.shard(count)]
            for start, count in zip(range(0, len(stored), EVAL_BATCH), counts)
        )
        batches = zip(counts, stored_batches(stored, shards, self.workers, pin_memory=self.device.type == "cuda"))
        return sharded_elbo(self.model, batches, self.codec, self.world, seed=self.config.seed, iwae_samples=iwae_samples)

    def _worth_a_line(self, record: dict[str, Any]) -> bool:
        """Every epoch of a short run; of a long one, every k-th and the last."""
        every = max(1, self.config.epochs // EPOCH_LINES)
        return record["epoch"] % every == 0 or self.state.finished

    @contextmanager
    def cpu_settings(self) -> Iterator[None]:
        """What `fit` trains under: the configured CPU threads, and on a CPU denormals flushed and freed
        memory kept for reuse (`vaekit.runtime.cpu`)."""
        if self.device.type == "cpu":
            keep_freed_memory()
        with torch_threads(self.config.threads), flush_denormals() if self.device.type == "cpu" else nullcontext():
            yield

    def fit(self, stop: StopRequest | None = None) -> list[dict[str, Any]]:
        """Train until the epochs run out or early stopping ends it; returns this call's epoch records.

        If `stop` is requested, the current step finishes, a checkpoint is written and
        `TrainingInterrupted` is raised.
        """
        records = []
        self.model.train()
        with self.cpu_settings():
            while not self.state.finished:
                self.run_epoch(stop)
                record = self.end_epoch()
                records.append(record)
                if self.progress_bar:
                    if self._worth_a_line(record):
                        tqdm.write(_describe(record))
                signal_number, _ = self._after_step(stop, time.perf_counter())
                if signal_number is not None and not self.state.finished:
                    self._interrupted(signal_number)
        return records


def _record(terms: BoundTerms) -> torch.Tensor:
    """The sums of a batch's bound, reconstruction term and KL, for the epoch's record (no autograd)."""
    with torch.no_grad():
        return torch.stack([terms.bound.sum(), terms.reconstruction.sum(), terms.kl.sum()])


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
    if "val_iwae" in record:
        text += f"  val -IWAE {-record['val_iwae']:.2f}"
    return text + f"  {record['images_per_second']:,.0f} img/s"


def write_results(trainer: Trainer) -> dict[str, Any]:
    """Test figures of the best weights, written to results.json."""
    world = trainer.world
    if world.is_main:
        load_weights(trainer.model, trainer.run_dir / WEIGHTS_FILE)
    world.broadcast_module(trainer.model)  # rank 0's file, which need not be on the other ranks' machines
    test = trainer.split_elbo(trainer.splits.test.x)
    results = {
        "best_epoch": trainer.state.best_epoch,
        "epochs_trained": trainer.state.epoch,
        "train_seconds": trainer.state.train_seconds,
        **{f"test_{key}": value for key, value in test.items()},
        "test_examples": len(trainer.splits.test),
    }
    if world.is_main:
        atomic_write_text(trainer.run_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
    return results
