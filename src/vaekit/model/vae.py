"""The VAE of the derivation: recognition model q(z|x), prior p(z) = N(0, I), generative model p(x|z).

q(z|x) = N(μ(x), diag σ²(x)) comes from the encoder's μ and log σ² heads; samples use the
reparameterization z = μ + σ·ε with ε ~ N(0, I), so gradients reach the encoder through the sample.

What the objectives and the engine ask of a model (docs/architecture.md): `encode(batch)` gives
μ and log σ², `log_likelihood(z, batch)` gives log p(x|z) for every draw of z, and `latent_dim`.
Both take the whole `Batch`, so a model conditioned on labels, or a decoder that reads x itself
(autoregressive, over a padded sequence), fits the same interface.

With `classes` > 0 the VAE is conditional (Sohn et al. 2015; Kingma et al. 2014's M2 with y observed):
q(z|x, y) and p(x|z, y), the label y a one-hot beside x in the encoder and beside z in the decoder, the
prior still N(0, I). Its bound is of log p(x|y); z holds what the label does not (a style).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.model.likelihoods import LIKELIHOODS
from vaekit.model.networks import build_networks


class VAE(nn.Module):
    def __init__(self, config: ModelConfig, event_shape: tuple[int, ...], likelihood: str, classes: int = 0):
        """`likelihood` is resolved ("bernoulli" or "gaussian"); `event_shape` is one example's shape;
        `classes` > 0 conditions encoder and decoder on a label of that many classes."""
        super().__init__()
        self.config = config
        self.event_shape = tuple(event_shape)
        self.latent_dim = config.latent_dim
        self.classes = classes
        self.encoder, self.decoder = build_networks(config, self.event_shape, classes)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be resolved to one of {', '.join(LIKELIHOODS)}, not {likelihood!r}")
        self.likelihood: nn.Module = LIKELIHOODS[likelihood](self.event_shape, config)

    @property
    def output_elements(self) -> int:
        """Values the decoder outputs per example (evaluation sizes its chunks by them): the data's size."""
        return math.prod(self.event_shape)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """μ(x) and log σ²(x) of q(z|x), each (B, D), in x's precision: under bf16 autocast the encoder's
        products run in bf16, the bound's arithmetic does not (without autocast the casts are no-ops)."""
        loc, log_variance = self.encoder(batch.x, self.condition(batch.labels))
        return loc.to(batch.x.dtype), log_variance.to(batch.x.dtype)

    def condition(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The one-hot (B, classes) of a conditional model's labels; None for a plain one."""
        if not self.classes:
            return None
        if labels is None:
            raise ValueError("a conditional VAE needs the labels of its inputs (Batch.labels)")
        return F.one_hot(labels.long(), self.classes).float()

    def log_likelihood(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """log p(x|z) (..., B) for latents z (..., B, D): the numbers of `observation_model(z).log_prob(x)`,
        from the likelihood's direct path rather than a distribution object built at every step."""
        return self.likelihood.log_prob(self.decoder(z, self.condition(batch.labels)).to(batch.x.dtype), batch.x)

    def importance_log_likelihood(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """log p(x|z) (K, B) for K importance samples z (K, B, D): the likelihood's path for many samples at
        once (vaekit.evaluation.importance)."""
        return self.likelihood.importance_log_prob(self.decoder(z, self.condition(batch.labels)), batch.x)

    def posterior(self, batch: Batch) -> Distribution:
        """q(z|x) with event shape (D,) and batch shape (B,)."""
        loc, log_variance = self.encode(batch)
        return Independent(Normal(loc, torch.exp(0.5 * log_variance)), 1)

    def prior(self, like: torch.Tensor | None = None) -> Distribution:
        """p(z) = N(0, I) over (D,), on the device and dtype of `like` (or the model's)."""
        ref = like if like is not None else next(self.parameters())
        zeros = torch.zeros(self.latent_dim, device=ref.device, dtype=ref.dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def observation_model(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> Distribution:
        """p(x|z) (p(x|z, y) given the labels y): batch shape z.shape[:-1], event shape the data's."""
        return self.likelihood(self.decoder(z, self.condition(labels)))

    def decode_mean(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z] (E[x|z, y]) (..., *event_shape): pixel probabilities or Gaussian means, in model units."""
        return self.likelihood.mean(self.decoder(z, self.condition(labels)))

    def start_output_at(self, data_mean: torch.Tensor) -> None:
        """Set the decoder's output bias so that, before training, p(x|z) has the data's mean
        `data_mean` (*event_shape, model units) wherever the decoder's hidden units are silent."""
        self.decoder.set_output_bias(self.likelihood.output_for_mean(data_mean))

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode `count` draws from the prior (of the classes `labels` (count,), for a conditional model);
        returns E[x|z] (count, *event_shape) in model units."""
        ref = next(self.parameters())
        z = torch.randn(count, self.latent_dim, generator=generator, device=ref.device, dtype=ref.dtype)
        return self.decode_mean(z, labels)


def reparameterize(
    loc: torch.Tensor,
    log_variance: torch.Tensor,
    samples: int = 1,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """z = μ + σ·ε, ε ~ N(0, I): (samples, B, D) draws that carry gradients back to μ and log σ².

    `noise` supplies ε (samples, B, D) instead of drawing it (a distributed rank's slice of the
    global batch's draws)."""
    if noise is None:
        noise = torch.randn((samples, *loc.shape), generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + torch.exp(0.5 * log_variance) * noise
