"""Walks through the latent space: paths between codes, sweeps of one dimension, the 2-D manifold grid.

Every function but `project` returns latent codes z (..., D) for a decoder; none touches data. `project`
puts codes in two dimensions for a scatter (PCA or t-SNE). The manifold grid goes
through the inverse Gaussian CDF, so equal steps in the grid are equal steps in probability under the
prior p(z) = N(0, I), as in Figure 4 of Kingma & Welling (2014).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Normal

from vaekit.errors import UserError

PATHS = ("linear", "slerp")
ACTIVE_KL = 0.01  # nats: a latent dimension with less KL than this carries (next to) nothing about x
GRID_EDGE = 0.05  # the manifold grid spans the prior's quantiles 0.05 .. 0.95 (the paper's figure)


def by_kl(kl: np.ndarray) -> list[int]:
    """Latent dimensions, most KL (D,) first; ties in index order."""
    return [int(d) for d in np.argsort(-kl, kind="stable")]


def active_dimensions(kl: np.ndarray) -> list[int]:
    """The dimensions whose KL is above ACTIVE_KL, most KL first: those a traversal or a slider shows."""
    return [d for d in by_kl(kl) if kl[d] > ACTIVE_KL]


def check_path(path: str, steps: int) -> None:
    """A UserError for an interpolation's --path or --steps that cannot be walked."""
    if path not in PATHS:
        raise UserError(f"--path {path}: use one of {', '.join(PATHS)}")
    if steps < 2:
        raise UserError(f"--steps {steps}: a path needs at least 2 steps (its two ends)")


def interpolation(z_from: torch.Tensor, z_to: torch.Tensor, steps: int, path: str = "linear") -> torch.Tensor:
    """`steps` codes from z_from to z_to (both ends included) for each pair: (N, steps, D) for (N, D) ends.

    slerp walks along the great circle between the two codes (scaled between their norms), which keeps
    the path where the prior's mass is in many dimensions, where a straight line passes near the origin."""
    t = torch.linspace(0.0, 1.0, steps, device=z_from.device, dtype=z_from.dtype)[None, :, None]  # (1, S, 1)
    start, end = z_from[:, None, :], z_to[:, None, :]
    if path == "linear":
        return start + t * (end - start)
    norms = (z_from.norm(dim=-1, keepdim=True), z_to.norm(dim=-1, keepdim=True))
    unit_from, unit_to = z_from / norms[0].clamp_min(1e-12), z_to / norms[1].clamp_min(1e-12)
    angle = torch.acos((unit_from * unit_to).sum(-1).clamp(-1.0, 1.0))[:, None, None]  # (N, 1, 1)
    sin = torch.sin(angle)
    parallel = sin.abs() < 1e-6  # the same direction: slerp is the straight line between the two
    weight_from = torch.where(parallel, 1.0 - t, torch.sin((1.0 - t) * angle) / torch.where(parallel, 1.0, sin))
    weight_to = torch.where(parallel, t, torch.sin(t * angle) / torch.where(parallel, 1.0, sin))
    direction = weight_from * unit_from[:, None, :] + weight_to * unit_to[:, None, :]
    radius = norms[0][:, None, :] + t * (norms[1] - norms[0])[:, None, :]
    return direction * radius


def traversal(base: torch.Tensor, scales: torch.Tensor, dims: list[int], steps: int, span: float = 3.0) -> torch.Tensor:
    """Codes that sweep each of `dims` from −span to +span times its scale around `base` (D,), the other
    dimensions held: (len(dims), steps, D)."""
    offsets = torch.linspace(-span, span, steps, device=base.device, dtype=base.dtype)
    codes = base.expand(len(dims), steps, base.shape[-1]).clone()
    for row, dim in enumerate(dims):
        codes[row, :, dim] = base[dim] + offsets * scales[dim]
    return codes


def manifold(latent_dim: int, grid: int, dims: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """A grid × grid of codes (grid, grid, D) over two dimensions, the others at the prior's mean 0: the
    prior's quantiles from GRID_EDGE to 1 − GRID_EDGE through the inverse Gaussian CDF. Rows run down
    the first dimension (high at the top), columns along the second."""
    quantiles = torch.linspace(GRID_EDGE, 1.0 - GRID_EDGE, grid, device=device)
    values = Normal(0.0, 1.0).icdf(quantiles)
    codes = torch.zeros(grid, grid, latent_dim, device=device)
    codes[:, :, dims[0]] = values.flip(0)[:, None]
    codes[:, :, dims[1]] = values[None, :]
    return codes


def project(loc: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, tuple[str, str]]:
    """Codes (N, D) in two dimensions and the axes' names: as they are for D ≤ 2, else PCA or t-SNE."""
    if loc.shape[1] == 1:
        return np.concatenate([loc, np.zeros_like(loc)], axis=1), ("z0", "(none: one latent dimension)")
    if loc.shape[1] == 2:
        return loc, ("z0", "z1")
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(loc) - 1) / 3))
        return TSNE(2, random_state=seed, perplexity=perplexity).fit_transform(loc), ("t-SNE 1", "t-SNE 2")
    # PCA by the SVD of the centred codes: scikit-learn's PCA gives these, but importing it costs a second
    centred = loc - loc.mean(0)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    shares = singular**2 / max(float((singular**2).sum()), 1e-30)
    axes = (f"principal component 1 ({shares[0]:.0%} of the variance)", f"principal component 2 ({shares[1]:.0%})")
    return centred @ directions[:2].T, axes
