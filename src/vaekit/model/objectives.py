"""The bounds the VAE maximizes, in nats per example, as objects: `Elbo(mc_samples)` and `Iwae(samples)`.

ELBO = (1/L) Σₗ log p(x|z⁽ˡ⁾) − KL(q(z|x) ‖ p(z)), with the closed-form Gaussian KL
    KL = ½ Σⱼ (σⱼ² + μⱼ² − log σⱼ² − 1),
and the importance-weighted bound (IWAE) log (1/K) Σₖ p(x, zₖ) / q(zₖ|x).

Each objective knows its bound (`terms`), the loss a step minimizes (`loss`, and `shard_loss` for one
process's part of a distributed batch), the bound validation computes (`validation`) and the figure
that scores a run (`score`). Which one a run uses is decided once, from its settings (`objective_for`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from vaekit.config import TrainConfig
from vaekit.data.batch import Batch
from vaekit.model.vae import VAE, reparameterize
from vaekit.runtime.world import World


@dataclass
class BoundTerms:
    """Per-example terms (B,) of a bound, in nats; `kl_per_dim` is (B, D)."""

    bound: torch.Tensor  # the ELBO (or IWAE bound) itself
    reconstruction: torch.Tensor  # (1/L) Σₗ log p(x|z⁽ˡ⁾)
    kl: torch.Tensor  # KL(q(z|x) ‖ p(z))
    kl_per_dim: torch.Tensor

    def sums(self) -> torch.Tensor:
        """The batch's sums of the bound, the reconstruction term and the KL (3,), without autograd:
        what an epoch's record and a dataset's figures add up."""
        with torch.no_grad():
            return torch.stack([self.bound.sum(), self.reconstruction.sum(), self.kl.sum()])

    @classmethod
    def of_nothing(cls, latent_dim: int, like: torch.Tensor) -> BoundTerms:
        """The terms of no examples: a distributed rank whose shard of a small last batch is empty."""
        empty = torch.zeros(0, device=like.device, dtype=like.dtype)
        return cls(empty, empty, empty, torch.zeros(0, latent_dim, device=like.device, dtype=like.dtype))


def gaussian_kl(loc: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per latent dimension, (..., D): ½ (σ² + μ² − log σ² − 1)."""
    return 0.5 * (log_variance.exp() + loc.square() - log_variance - 1.0)


def _standard_normal_log_prob(value: torch.Tensor) -> torch.Tensor:
    return -0.5 * value.square() - 0.5 * math.log(2 * math.pi)


def log_importance_weights(
    loc: torch.Tensor, log_variance: torch.Tensor, z: torch.Tensor, log_likelihood: torch.Tensor
) -> torch.Tensor:
    """log p(x, zₖ) − log q(zₖ|x) (K, B) for draws z (K, B, D) of q = N(μ, σ²) (μ, log σ² (B, D)) and their
    log p(x|zₖ) (K, B), with p(z) = N(0, I): the one place the importance weights are computed, for the
    IWAE bound a run trains on and for the log-likelihood evaluation estimates."""
    std = torch.exp(0.5 * log_variance)
    log_q = _standard_normal_log_prob((z - loc) / std).sum(-1) - (0.5 * log_variance).sum(-1)  # (K, B)
    log_prior = _standard_normal_log_prob(z).sum(-1)
    return log_likelihood + log_prior - log_q


class Objective(Protocol):
    """What the engine asks of a bound; `Elbo` and `Iwae` are the two there are."""

    samples: int  # draws of ε per example: L or K

    @property
    def validation(self) -> Objective: ...
    @property
    def score(self) -> str: ...

    def terms(self, model: VAE, batch: Batch, generator: torch.Generator | None = None,
              noise: torch.Tensor | None = None) -> BoundTerms: ...
    def loss(self, terms: BoundTerms, beta: float | torch.Tensor = 1.0) -> torch.Tensor: ...
    def shard_loss(self, terms: BoundTerms, global_batch: int, world: World,
                   beta: float | torch.Tensor = 1.0) -> torch.Tensor: ...
    def figures(self, means: torch.Tensor) -> dict[str, float]: ...


@dataclass(frozen=True)
class Elbo:
    """The ELBO with L = `mc_samples` reparameterized draws per example; with free bits λ > 0 each latent
    dimension's batch-averaged KL counts as at least λ in the loss (Kingma et al. 2016)."""

    mc_samples: int = 1
    free_bits: float = 0.0
    score = "elbo"  # the figure that scores a run: the validation ELBO
    description = "the validation ELBO"

    @property
    def samples(self) -> int:
        return self.mc_samples

    @property
    def validation(self) -> Elbo:
        """One sample per example: validation of any L takes the quick one-sample bound."""
        return Elbo()

    def terms(self, model: VAE, batch: Batch, generator: torch.Generator | None = None,
              noise: torch.Tensor | None = None) -> BoundTerms:
        """The ELBO of each example (ε drawn from `generator`, or given as `noise` (L, B, D))."""
        loc, log_variance = model.encode(batch)
        z = reparameterize(loc, log_variance, self.mc_samples, generator, noise)  # (L, B, D)
        reconstruction = model.log_likelihood(z, batch).mean(0)  # (B,)
        kl_per_dim = gaussian_kl(loc, log_variance)  # (B, D)
        kl = kl_per_dim.sum(-1)
        return BoundTerms(reconstruction - kl, reconstruction, kl, kl_per_dim)

    def loss(self, terms: BoundTerms, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        """−(reconstruction − β·KL) averaged over the batch; with β = 1 and λ = 0 exactly −ELBO."""
        kl_per_dim = terms.kl_per_dim.mean(0)  # (D,)
        if self.free_bits > 0:
            kl_per_dim = kl_per_dim.clamp(min=self.free_bits)
        return -(terms.reconstruction.mean() - beta * kl_per_dim.sum())

    def shard_loss(self, terms: BoundTerms, global_batch: int, world: World,
                   beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        """This rank's part of `loss` over a global batch of `global_batch` examples, scaled by the number
        of ranks, so that the mean of the ranks' gradients (what DDP computes) is the batch's gradient.
        Free bits floor each dimension's KL averaged over the *global* batch, so that average is summed
        over the ranks first; a floored dimension contributes no gradient, as under `clamp`."""
        scale = world.size / global_batch
        kl_sums = terms.kl_per_dim.sum(0)  # (D,)
        if self.free_bits > 0:
            batch_mean = world.all_reduce_sum(kl_sums.detach().clone()) / global_batch
            floor = torch.full_like(kl_sums, self.free_bits / scale)  # λ per rank after scaling
            kl_sums = torch.where(batch_mean < self.free_bits, floor, kl_sums)
        return -(terms.reconstruction.sum() - beta * kl_sums.sum()) * scale

    def figures(self, means: torch.Tensor) -> dict[str, float]:
        """{elbo, reconstruction, kl} from the means of (bound, reconstruction, kl)."""
        bound, reconstruction, kl = means.tolist()
        return {"elbo": bound, "reconstruction": reconstruction, "kl": kl}


@dataclass(frozen=True)
class Iwae:
    """The importance-weighted bound with K = `samples`; K = 1 is a one-sample ELBO. Its loss ignores β
    and free bits: the bound does not split into the two terms."""

    samples: int = 5
    score = "iwae"  # an IWAE run is scored by the bound it optimizes
    description = "the validation IWAE bound"

    @property
    def validation(self) -> Iwae:
        return self

    def terms(self, model: VAE, batch: Batch, generator: torch.Generator | None = None,
              noise: torch.Tensor | None = None) -> BoundTerms:
        """log (1/K) Σₖ p(x, zₖ)/q(zₖ|x) (B,); the reconstruction term is the mean of the K log p(x|zₖ)."""
        loc, log_variance = model.encode(batch)
        z = reparameterize(loc, log_variance, self.samples, generator, noise)  # (K, B, D)
        log_likelihood = model.log_likelihood(z, batch)  # (K, B)
        log_weights = log_importance_weights(loc, log_variance, z, log_likelihood)
        kl_per_dim = gaussian_kl(loc, log_variance)
        bound = torch.logsumexp(log_weights, dim=0) - math.log(self.samples)
        return BoundTerms(bound, log_likelihood.mean(0), kl_per_dim.sum(-1), kl_per_dim)

    def loss(self, terms: BoundTerms, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        return -terms.bound.mean()

    def shard_loss(self, terms: BoundTerms, global_batch: int, world: World,
                   beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        return -terms.bound.sum() * (world.size / global_batch)

    def figures(self, means: torch.Tensor) -> dict[str, float]:
        """{elbo, reconstruction, kl, iwae}: the ELBO of the same K samples beside the bound."""
        bound, reconstruction, kl = means.tolist()
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl, "iwae": bound}


OBJECTIVES: dict[str, Callable[[TrainConfig], Objective]] = {
    "elbo": lambda train: Elbo(train.mc_samples, train.free_bits),
    "iwae": lambda train: Iwae(train.iwae_samples),
}


def objective_for(train: TrainConfig) -> Objective:
    """The objective a run's settings name (`objective`, validated by TrainConfig)."""
    return OBJECTIVES[train.objective](train)
