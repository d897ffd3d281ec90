"""Observation models p(x|z) as `torch.distributions` objects over the whole data event.

A likelihood turns the decoder's output (..., *event_shape) into a distribution whose
`log_prob(x)` sums over the event dimensions, giving one number per example (nats). The bounds take
the same numbers from `log_prob(output, x)`, which skips building the distribution: Bernoulli's
is one fused kernel (tests/test_speed_paths.py checks both ways agree).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaekit.config import ModelConfig

OUTPUT_PROBABILITY_FLOOR = 1e-3


class BernoulliLikelihood(nn.Module):
    """Pixels in [0, 1]; the decoder emits logits (never probabilities: sigmoid + BCE loses precision)."""

    name = "bernoulli"

    def __init__(self, event_shape: tuple[int, ...], config: ModelConfig | None = None):
        super().__init__()
        self.event_dims = len(event_shape)

    def forward(self, logits: torch.Tensor) -> Distribution:
        # validate_args=False: continuous grey levels in [0, 1] are valid targets (as in the paper's MNIST runs).
        return Independent(Bernoulli(logits=logits, validate_args=False), self.event_dims)

    def log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) (...,) for logits (..., *event_shape) and x broadcasting to them: what
        `Bernoulli.log_prob` computes, summed over the event as `Independent` sums it, without the
        objects' argument checks and broadcasting (a few percent of a training step on the CPU)."""
        bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return -bce.flatten(start_dim=bce.dim() - self.event_dims).sum(-1)

    def importance_log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`log_prob` for logits (K, B, *event_shape) of K importance samples and x (B, *event_shape), without
        gradients: log p(x|z) = Σ x·l − Σ softplus(l), where Σ x·l is one batched matrix product, less work
        than the elementwise cross-entropy (benchmarks/evaluate_speed.py times both)."""
        flat = logits.flatten(start_dim=logits.dim() - self.event_dims)  # (K, B, P) for P data dimensions
        return torch.einsum("kbp,bp->kb", flat, x.flatten(start_dim=1)) - F.softplus(flat).sum(-1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def output_for_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The decoder output whose distribution has this mean: logits, with probabilities kept within
        [1e-3, 1 − 1e-3] so that a pixel never lit in the data does not start at an infinite logit."""
        return torch.logit(mean.clamp(OUTPUT_PROBABILITY_FLOOR, 1 - OUTPUT_PROBABILITY_FLOOR))


class GaussianLikelihood(nn.Module):
    """Real values; the decoder emits the mean, the variance is learned per dimension or shared."""

    name = "gaussian"

    def __init__(self, event_shape: tuple[int, ...], config: ModelConfig | None = None):
        super().__init__()
        self.event_dims = len(event_shape)
        variance = (config or ModelConfig()).gaussian_variance
        shape = tuple(event_shape) if variance == "per-dimension" else ()
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, mean: torch.Tensor) -> Distribution:
        return Independent(Normal(mean, self._scale(mean)), self.event_dims)

    def _scale(self, mean: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp().expand_as(mean)

    def log_prob(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) (...,) summed over the event: the operations of `Independent(Normal(·), ·).log_prob`,
        so the same numbers bit for bit, without the objects' argument checks. Those ask the host whether
        every value is valid at each step, which a CUDA graph cannot hold; a NaN mean now reaches the
        trainer's check as a NaN loss instead of stopping the distribution's constructor."""
        scale = self._scale(mean)
        log_density = -((x - mean) ** 2) / (2 * scale**2) - scale.log() - math.log(math.sqrt(2 * math.pi))
        return log_density.reshape(*log_density.shape[: log_density.dim() - self.event_dims], -1).sum(-1)

    def importance_log_prob(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`log_prob` for the K importance samples of an evaluation (no faster path is known)."""
        return self.log_prob(mean, x)

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def output_for_mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean


# The resolved likelihood names a model is built with (config.json's `likelihood`), and their classes.
LIKELIHOODS: dict[str, type[nn.Module]] = {"bernoulli": BernoulliLikelihood, "gaussian": GaussianLikelihood}
