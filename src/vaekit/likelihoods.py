"""Observation models p(x|z) as `torch.distributions` objects over the whole data event.

A likelihood turns the decoder's output (..., *event_shape) into a distribution whose
`log_prob(x)` sums over the event dimensions, giving one number per example (nats).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal


class BernoulliLikelihood(nn.Module):
    """Pixels in [0, 1]; the decoder emits logits (never probabilities: sigmoid + BCE loses precision)."""

    name = "bernoulli"

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_dims = len(event_shape)

    def forward(self, logits: torch.Tensor) -> Distribution:
        # validate_args=False: continuous grey levels in [0, 1] are valid targets (as in the paper's MNIST runs).
        return Independent(Bernoulli(logits=logits, validate_args=False), self.event_dims)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


class GaussianLikelihood(nn.Module):
    """Real values; the decoder emits the mean, the variance is learned per dimension or shared."""

    name = "gaussian"

    def __init__(self, event_shape: tuple[int, ...], variance: str = "per-dimension"):
        super().__init__()
        self.event_dims = len(event_shape)
        shape = tuple(event_shape) if variance == "per-dimension" else ()
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, mean: torch.Tensor) -> Distribution:
        return Independent(Normal(mean, self.log_scale.exp().expand_as(mean)), self.event_dims)

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean
