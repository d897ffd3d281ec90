"""The bounds the VAE maximizes, in nats per example.

ELBO = (1/L) Σₗ log p(x|z⁽ˡ⁾) − KL(q(z|x) ‖ p(z)), with the closed-form Gaussian KL
    KL = ½ Σⱼ (σⱼ² + μⱼ² − log σⱼ² − 1),
and the importance-weighted bound (IWAE) log (1/K) Σₖ p(x, zₖ) / q(zₖ|x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaekit.model.vae import VAE, reparameterize


@dataclass
class BoundTerms:
    """Per-example terms (B,) of a bound, in nats; `kl_per_dim` is (B, D)."""

    bound: torch.Tensor  # the ELBO (or IWAE bound) itself
    reconstruction: torch.Tensor  # (1/L) Σₗ log p(x|z⁽ˡ⁾)
    kl: torch.Tensor  # KL(q(z|x) ‖ p(z))
    kl_per_dim: torch.Tensor


def gaussian_kl(loc: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per latent dimension, (..., D): ½ (σ² + μ² − log σ² − 1)."""
    return 0.5 * (log_variance.exp() + loc.square() - log_variance - 1.0)


def posterior_parameters(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """μ(x) and log σ²(x) (B, D) in x's precision: under bf16 autocast the encoder's products run in
    bf16, the bound's arithmetic does not (without autocast the casts are no-ops)."""
    loc, log_variance = model.posterior_parameters(x)
    return loc.to(x.dtype), log_variance.to(x.dtype)


def observation_log_prob(model: VAE, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) (..., B) for latents z (..., B, D): the numbers of `model.observation_model(z).log_prob(x)`,
    from the likelihood's direct path rather than a distribution object built at every step."""
    return model.likelihood.log_prob(model.decoder(z).to(x.dtype), x)


def elbo(
    model: VAE,
    x: torch.Tensor,
    mc_samples: int = 1,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> BoundTerms:
    """The ELBO of each example of x (B, *event_shape) with L = `mc_samples` reparameterized samples
    (ε drawn from `generator`, or given as `noise` (L, B, D))."""
    loc, log_variance = posterior_parameters(model, x)
    z = reparameterize(loc, log_variance, mc_samples, generator, noise)  # (L, B, D)
    reconstruction = observation_log_prob(model, z, x).mean(0)  # (B,)
    kl_per_dim = gaussian_kl(loc, log_variance)  # (B, D)
    kl = kl_per_dim.sum(-1)
    return BoundTerms(reconstruction - kl, reconstruction, kl, kl_per_dim)


def log_importance_weights(
    model: VAE,
    x: torch.Tensor,
    samples: int,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p(x, zₖ) − log q(zₖ|x) for K = `samples` draws from q: returns (weights, log p(x|z), kl) with
    weights (K, B), the reconstruction log-likelihoods (K, B) and the closed-form KL per dimension (B, D)."""
    loc, log_variance = posterior_parameters(model, x)
    z = reparameterize(loc, log_variance, samples, generator, noise)  # (K, B, D)
    log_likelihood = observation_log_prob(model, z, x)  # (K, B)
    std = torch.exp(0.5 * log_variance)
    log_q = _standard_normal_log_prob((z - loc) / std).sum(-1) - (0.5 * log_variance).sum(-1)  # (K, B)
    log_prior = _standard_normal_log_prob(z).sum(-1)
    return log_likelihood + log_prior - log_q, log_likelihood, gaussian_kl(loc, log_variance)


def _standard_normal_log_prob(value: torch.Tensor) -> torch.Tensor:
    return -0.5 * value.square() - 0.5 * math.log(2 * math.pi)


def iwae(
    model: VAE,
    x: torch.Tensor,
    samples: int,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> BoundTerms:
    """The importance-weighted bound log (1/K) Σₖ p(x, zₖ)/q(zₖ|x) (B,); K = 1 is a one-sample ELBO."""
    log_weights, log_likelihood, kl_per_dim = log_importance_weights(model, x, samples, generator, noise)
    bound = torch.logsumexp(log_weights, dim=0) - math.log(samples)
    return BoundTerms(bound, log_likelihood.mean(0), kl_per_dim.sum(-1), kl_per_dim)


def training_loss(
    terms: BoundTerms, beta: float = 1.0, free_bits: float = 0.0, objective: str = "elbo"
) -> torch.Tensor:
    """The scalar to minimize: −(reconstruction − β·KL) averaged over the batch.

    With free bits λ > 0 each latent dimension's batch-averaged KL counts as at least λ
    (Kingma et al. 2016); with β = 1 and λ = 0 this is exactly −ELBO. The IWAE objective ignores
    β and free bits: its bound does not split into the two terms.
    """
    if objective == "iwae":
        return -terms.bound.mean()
    kl_per_dim = terms.kl_per_dim.mean(0)  # (D,)
    if free_bits > 0:
        kl_per_dim = kl_per_dim.clamp(min=free_bits)
    return -(terms.reconstruction.mean() - beta * kl_per_dim.sum())


def bound_figures(means: torch.Tensor, iwae_bound: bool) -> dict[str, float]:
    """{elbo, reconstruction, kl[, iwae]} from the means of (bound, reconstruction, kl)."""
    bound, reconstruction, kl = means.tolist()
    if not iwae_bound:
        return {"elbo": bound, "reconstruction": reconstruction, "kl": kl}
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl, "iwae": bound}
