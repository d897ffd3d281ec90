"""Figures of a trained model on a dataset, in nats per example.

`dataset_elbo` is the quick one-sample bound that training validates with every epoch.
`evaluate` gives the figures papers print: the ELBO and its two terms; log p(x) estimated by
importance sampling with q(z|x) as the proposal,

    log p(x) ≈ log (1/K) Σₖ p(x, zₖ) / q(zₖ|x),   zₖ ~ q(z|x),

reported as NLL = −log p(x) (the estimate is a stochastic lower bound on log p(x) that tightens as
K grows; K = 5000 for published numbers); bits per dimension; active units; and the KL of each
latent dimension.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vaekit.data.batch import Batch
from vaekit.data.codec import Codec
from vaekit.data.tokens import PAD, TokenCodec
from vaekit.evaluation.bounds import EVAL_BATCH
from vaekit.model.objectives import gaussian_kl, log_importance_weights
from vaekit.model.vae import VAE, reparameterize
from vaekit.runtime.world import SINGLE_PROCESS, World

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): a unit whose posterior mean varies less over the data is unused
# Decoder outputs (samples × examples × data dimensions) held at once: 16 MiB of float32 logits on a CPU, so
# memory stays bounded for any K and any number of examples; the hidden activations are of the same order.
# Larger chunks were no faster on a CPU (benchmarks/evaluate_speed.py). A GPU takes 128 MiB at once: with the
# CPU's chunks, K = 5000 over Fashion-MNIST's test set is 10,000 rounds of small kernels, launch-bound
# (docs/performance.md, On a GPU, has the times of both).
ELEMENTS_PER_CHUNK = 1 << 22
GPU_ELEMENTS_PER_CHUNK = 1 << 25

Progress = Callable[[int, int], None]  # (chunks done, chunks in all), for a progress bar in the CLI


@dataclass
class ImportanceTerms:
    """Per-example results (B,) of K importance samples; `loc` and `kl_per_dim` are (B, D)."""

    log_marginal: torch.Tensor  # log (1/K) Σₖ p(x, zₖ)/q(zₖ|x), the estimate of log p(x)
    reconstruction: torch.Tensor  # (1/K) Σₖ log p(x|zₖ): the ELBO's first term from the same samples
    kl_per_dim: torch.Tensor  # closed-form KL(q(zⱼ|x) ‖ p(zⱼ))
    loc: torch.Tensor  # μ(x), for active units


def chunk_budget(device: torch.device) -> int:
    """Decoder outputs to hold at once on `device` (elements)."""
    return ELEMENTS_PER_CHUNK if device.type == "cpu" else GPU_ELEMENTS_PER_CHUNK


def samples_per_chunk(examples: int, event_size: int, elements: int = ELEMENTS_PER_CHUNK) -> int:
    """How many of the K samples of `examples` inputs to decode at once within the memory budget."""
    return max(1, elements // max(1, examples * event_size))


def log_likelihood(model: VAE, z: torch.Tensor, batch: Batch) -> torch.Tensor:
    """log p(x|z) (K, B) of K importance samples z (K, B, D): the model's path for many samples (for
    Bernoulli pixels one batched matrix product, `BernoulliLikelihood.importance_log_prob`)."""
    return model.importance_log_likelihood(z, batch)


def running_logsumexp(running: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
    """Fold a chunk of log weights (k, B) into the running log Σ exp (B,); −inf starts it."""
    return torch.logaddexp(running, torch.logsumexp(chunk, dim=0))


@torch.no_grad()
def importance_terms(
    model: VAE,
    x: torch.Tensor,
    importance_samples: int,
    generator: torch.Generator | None = None,
    samples_at_once: int | None = None,
    on_chunk: Callable[[], None] | None = None,
    log_likelihood_fn: Callable[[VAE, torch.Tensor, Batch], torch.Tensor] = log_likelihood,
    labels: torch.Tensor | None = None,
) -> ImportanceTerms:
    """K = `importance_samples` draws zₖ ~ q(z|x) for each example of x (B, *event_shape), decoded
    `samples_at_once` samples at a time as a (k, B, D) batch; the log weights fold into a running
    logsumexp, so memory does not grow with K. `log_likelihood_fn` computes log p(x|z) (k, B). A conditional
    model's `labels` (B,) make it log p(x|y)."""
    batch = Batch(x, labels)
    loc, log_variance = model.encode(batch)  # (B, D) each
    chunk = samples_at_once or samples_per_chunk(len(x), model.output_elements, chunk_budget(x.device))
    running = torch.full((len(x),), -math.inf, device=x.device, dtype=loc.dtype)
    reconstruction = torch.zeros(len(x), device=x.device, dtype=torch.float64)
    for start in range(0, importance_samples, chunk):
        z = reparameterize(loc, log_variance, min(chunk, importance_samples - start), generator)  # (k, B, D)
        log_px_given_z = log_likelihood_fn(model, z, batch)  # (k, B)
        running = running_logsumexp(running, log_importance_weights(loc, log_variance, z, log_px_given_z))
        reconstruction += log_px_given_z.sum(0, dtype=torch.float64)
        if on_chunk is not None:
            on_chunk()
    return ImportanceTerms(
        log_marginal=running - math.log(importance_samples),
        reconstruction=(reconstruction / importance_samples).to(loc.dtype),
        kl_per_dim=gaussian_kl(loc, log_variance),
        loc=loc,
    )


@dataclass(frozen=True)
class Evaluation:
    """Figures of a model on a split: nats per example unless named otherwise."""

    examples: int
    importance_samples: int  # K
    seed: int
    nll: float  # −log p(x) estimated with K importance samples; lower is better
    bits_per_dim: float  # nll / (data dimensions · ln 2)
    elbo: float  # reconstruction − kl, from the same K samples
    reconstruction: float  # E_q[log p(x|z)]
    kl: float  # KL(q(z|x) ‖ p(z)), closed form
    kl_per_dim: tuple[float, ...]  # the KL of each latent dimension, averaged over the data
    posterior_mean_variance: tuple[float, ...]  # Var over the data of each μⱼ(x)
    active_units: int  # latent dimensions whose posterior-mean variance exceeds ACTIVE_UNIT_THRESHOLD
    latent_dim: int
    data_dimensions: int
    seconds: float
    # Text: the tokens of the examples (each sentence's </s> included), the NLL per token and the perplexity
    # exp(NLL per token), the figures language-model papers print; None for other data
    tokens: int | None = None
    nll_per_token: float | None = None
    perplexity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        figures = {**asdict(self), "active_unit_threshold": ACTIVE_UNIT_THRESHOLD}
        return {key: value for key, value in figures.items() if value is not None}


def active_units(posterior_mean_variance: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies over the data by more than `threshold`."""
    return int((posterior_mean_variance > threshold).sum())


class _Totals:
    """Float64 sums over the examples seen so far: memory stays the same for any number of examples."""

    def __init__(self, latent_dim: int, device: torch.device):
        self.count = 0
        self.log_marginal = self.reconstruction = 0.0
        self.kl_per_dim, self.loc, self.loc_squared = (
            torch.zeros(latent_dim, dtype=torch.float64, device=device) for _ in range(3)
        )

    def add(self, terms: ImportanceTerms) -> None:
        loc = terms.loc.double()
        self.count += len(loc)
        self.log_marginal += terms.log_marginal.sum(dtype=torch.float64).item()
        self.reconstruction += terms.reconstruction.sum(dtype=torch.float64).item()
        self.kl_per_dim += terms.kl_per_dim.sum(0, dtype=torch.float64)
        self.loc += loc.sum(0)
        self.loc_squared += loc.square().sum(0)

    def summed_over(self, world: World) -> None:
        """[distributed] Add up the totals of all ranks, each of which saw some of the examples."""
        if world.size == 1:
            return
        scalars = torch.tensor([self.count, self.log_marginal, self.reconstruction], dtype=torch.float64,
                               device=self.loc.device)
        summed = world.all_reduce_sum(torch.cat([scalars, self.kl_per_dim, self.loc, self.loc_squared]))
        count, self.log_marginal, self.reconstruction = summed[:3].tolist()
        self.count = round(count)
        self.kl_per_dim, self.loc, self.loc_squared = summed[3:].chunk(3)

    def posterior_mean_variance(self) -> torch.Tensor:
        """Var over the data of each μⱼ(x), (D,)."""
        mean = self.loc / self.count
        return (self.loc_squared / self.count - mean.square()).clamp(min=0)


@torch.no_grad()
def evaluate(
    model: VAE,
    stored: np.ndarray | torch.Tensor,
    codec: Codec,
    importance_samples: int = 5000,
    seed: int = 0,
    batch_size: int = EVAL_BATCH,
    progress: Progress | None = None,
    world: World = SINGLE_PROCESS,
    labels: np.ndarray | torch.Tensor | None = None,
) -> Evaluation:
    """The figures of `model` on the examples `stored` (in stored form), deterministic given `seed`.

    Examples go `batch_size` at a time (fewer for large data, to keep within the memory budget),
    each batch's K samples in chunks of `samples_per_chunk`; `progress(done, total)` is called
    after every chunk. A conditional model takes the examples' `labels`, for log p(x|y). Under torchrun
    (`world`, vaekit.runtime.world) each rank takes every N-th batch and the sums are all-reduced: the
    figures of one process.
    """
    started = time.perf_counter()
    device = next(model.parameters()).device
    stored = torch.as_tensor(stored)
    if len(stored) == 0:
        raise ValueError("evaluate needs at least one example")
    tokens = None
    if isinstance(codec, TokenCodec):  # sentences in order of length: each batch is cut to its longest (1.8x faster)
        lengths = (stored != PAD).sum(1)
        tokens = int(lengths.sum())
        by_length = torch.argsort(lengths, stable=True)
        stored = stored[by_length]
        labels = None if labels is None else torch.as_tensor(labels)[by_length]
    generator = torch.Generator(device=device).manual_seed(seed)
    event_size = math.prod(stored.shape[1:])
    decoded = model.output_elements  # the decoder's outputs per example: what a chunk holds
    budget = chunk_budget(device)
    batch_size = max(1, min(batch_size, len(stored), budget // max(1, decoded)))
    chunk = samples_per_chunk(batch_size, decoded, budget)
    batches = range(0, len(stored), batch_size)
    on_chunk = _ChunkProgress(progress, len(batches[world.rank :: world.size]) * math.ceil(importance_samples / chunk))
    totals = _Totals(model.latent_dim, device)
    was_training = model.training
    model.eval()
    try:
        for number, start in enumerate(batches):
            if number % world.size != world.rank:  # [distributed] another rank's batch: keep the generator in step
                _draw_and_discard(generator, min(batch_size, len(stored) - start), model.latent_dim,
                                  importance_samples, chunk)
                continue
            x = codec.to_model(stored[start : start + batch_size].to(device))
            y = None if labels is None else torch.as_tensor(labels[start : start + batch_size]).to(device)
            totals.add(importance_terms(model, x, importance_samples, generator, chunk, on_chunk, labels=y))
    finally:
        model.train(was_training)
    totals.summed_over(world)
    return _figures(totals, importance_samples, seed, event_size, time.perf_counter() - started, tokens)


class _ChunkProgress:
    """Tells `progress(done, total)` after every chunk of importance samples."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _draw_and_discard(generator: torch.Generator, examples: int, latent_dim: int, importance_samples: int,
                      chunk: int) -> None:
    """[distributed] The ε draws `importance_terms` makes for a batch, unused: cheap next to decoding them."""
    for start in range(0, importance_samples, chunk):
        torch.randn((min(chunk, importance_samples - start), examples, latent_dim), generator=generator,
                    device=generator.device)


def _figures(totals: _Totals, importance_samples: int, seed: int, event_size: int, seconds: float,
             tokens: int | None = None) -> Evaluation:
    nll = -totals.log_marginal / totals.count
    per_token = None if tokens is None else nll * totals.count / tokens
    kl_per_dim = totals.kl_per_dim / totals.count
    reconstruction = totals.reconstruction / totals.count
    mean_variance = totals.posterior_mean_variance()
    return Evaluation(
        examples=totals.count,
        importance_samples=importance_samples,
        seed=seed,
        nll=nll,
        bits_per_dim=nll / (event_size * math.log(2)),
        elbo=reconstruction - kl_per_dim.sum().item(),
        reconstruction=reconstruction,
        kl=kl_per_dim.sum().item(),
        kl_per_dim=tuple(kl_per_dim.tolist()),
        posterior_mean_variance=tuple(mean_variance.tolist()),
        active_units=active_units(mean_variance),
        latent_dim=len(kl_per_dim),
        data_dimensions=event_size,
        seconds=seconds,
        tokens=tokens,
        nll_per_token=per_token,
        perplexity=None if per_token is None else math.exp(per_token),
    )
