"""How noisy is the encoder's gradient? Score-function versus reparameterized estimates on a real VAE.

For one fixed minibatch x₁…x_B the objective is the batch-averaged ELBO. Every draw of either
estimator takes one z_b ~ q_φ(z|x_b) per example, z = μ_φ(x) + σ_φ(x)·ε, and differentiates a
single-sample Monte-Carlo ELBO with respect to the encoder's parameters φ (⊥ is stop-gradient):

  kl = "sampled"   f_φ(z) = log p(x|z) + log p(z) − log q_φ(z|x)
      pathwise        ĝ = ∇φ f_φ(μ_φ + σ_φ·ε)                            z carries the gradient
      score function  ĝ = ∇φ [⊥f·log q_φ(⊥z|x) + f_φ(⊥z)] = (f − 1)·∇φ log q_φ(z|x)
  kl = "analytic"  f(z) = log p(x|z), minus the closed-form KL(q_φ ‖ p), whose gradient is exact
      pathwise        ĝ = ∇φ [log p(x|μ_φ + σ_φ·ε) − KL]                 what `vaekit train` follows
      score function  ĝ = ∇φ [⊥log p(x|z)·log q_φ(⊥z|x) − KL]

Both are unbiased for ∇φ ELBO: E_q[∇φ log q] = 0 and ∇φ E_q[f] = E_q[f·∇φ log q + ∇φ f]. The
variance reported is the trace of the covariance of ĝ over repeated draws (fixed minibatch, fixed
weights), in total and per encoder layer (a layer's weight and bias together).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributions import kl_divergence

from vaekit.config import RunConfig
from vaekit.data.batch import Batch
from vaekit.data.source import TEXT
from vaekit.errors import UserError
from vaekit.model.vae import VAE
from vaekit.reporting.pictures import save_figure

KL_FORMS = ("sampled", "analytic")
SCORE_FUNCTION, PATHWISE = "score_function", "pathwise"

# (model, x (B, *event), ε (B, D), kl form) -> the scalar whose gradient with respect to φ is one draw of ĝ.
Surrogate = Callable[[VAE, torch.Tensor, torch.Tensor, str], torch.Tensor]


def pathwise_surrogate(model: VAE, x: torch.Tensor, noise: torch.Tensor, kl: str) -> torch.Tensor:
    """The Monte-Carlo ELBO at z = μ + σ·ε, batch-averaged: autograd differentiates through z."""
    posterior = model.posterior(Batch(x))
    z = posterior.base_dist.loc + posterior.base_dist.scale * noise  # (B, D)
    log_likelihood = model.observation_model(z).log_prob(x)  # (B,)
    if kl == "analytic":
        return (log_likelihood - kl_divergence(posterior, model.prior(x))).mean()
    return (log_likelihood + model.prior(z).log_prob(z) - posterior.log_prob(z)).mean()


def score_function_surrogate(model: VAE, x: torch.Tensor, noise: torch.Tensor, kl: str) -> torch.Tensor:
    """⊥f·log q(⊥z|x) plus f's own dependence on φ, batch-averaged: no gradient passes through z."""
    posterior = model.posterior(Batch(x))
    with torch.no_grad():
        z = posterior.base_dist.loc + posterior.base_dist.scale * noise  # (B, D)
        log_likelihood = model.observation_model(z).log_prob(x)  # (B,); the decoder's weights are not φ
    log_q = posterior.log_prob(z)  # (B,), depends on φ through μ and σ only
    if kl == "analytic":
        return (log_likelihood * log_q - kl_divergence(posterior, model.prior(x))).mean()
    f = log_likelihood + model.prior(z).log_prob(z) - log_q
    return (f.detach() * log_q + f).mean()


SURROGATES: dict[str, Surrogate] = {SCORE_FUNCTION: score_function_surrogate, PATHWISE: pathwise_surrogate}


@dataclass(frozen=True)
class Layer:
    """An encoder module with parameters of its own, e.g. `body.1.0` (Linear 64→400) or `heads.loc`."""

    name: str
    description: str  # e.g. "Linear 64→400"
    parameter_names: tuple[str, ...]
    size: int  # number of scalars, weight and bias together


def encoder_layers(model: VAE) -> list[Layer]:
    layers = []
    for name, module in model.encoder.named_modules():
        own = [(f"{name}.{p}" if name else p, tensor) for p, tensor in module.named_parameters(recurse=False)]
        if own:
            layers.append(Layer(name or "encoder", _describe(module), tuple(n for n, _ in own),
                                sum(t.numel() for _, t in own)))
    return layers


def _describe(module: torch.nn.Module) -> str:
    if isinstance(module, torch.nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        return f"{type(module).__name__} {module.in_channels}→{module.out_channels}"
    return type(module).__name__


def gradient_draws(
    model: VAE, x: torch.Tensor, surrogate: Surrogate, kl: str, draws: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """`draws` independent estimates ĝ of ∇φ ELBO, each flattened to (P,) in `encoder_layers` order."""
    parameters = dict(model.encoder.named_parameters())
    ordered = [parameters[name] for layer in encoder_layers(model) for name in layer.parameter_names]
    for _ in range(draws):
        noise = torch.randn(x.shape[0], model.latent_dim, generator=generator, device=x.device, dtype=x.dtype)
        gradients = torch.autograd.grad(surrogate(model, x, noise, kl), ordered, allow_unused=True)
        yield torch.cat([
            (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gradients, ordered)
        ])


@dataclass
class RunningMoments:
    """Per-coordinate mean and variance of a stream of vectors, in float64, shifted by the first for stability."""

    count: int = 0
    shift: torch.Tensor | None = None
    total: torch.Tensor | None = None
    total_squares: torch.Tensor | None = None

    def add(self, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float64)
        if self.shift is None:
            self.shift, self.total, self.total_squares = value.clone(), torch.zeros_like(value), torch.zeros_like(value)
        centred = value - self.shift
        self.total += centred
        self.total_squares += centred.square()
        self.count += 1

    @property
    def mean(self) -> torch.Tensor:
        return self.shift + self.total / self.count

    @property
    def variance(self) -> torch.Tensor:
        """Unbiased per-coordinate sample variance (P,)."""
        centred_mean = self.total / self.count
        return (self.total_squares - self.count * centred_mean.square()) / (self.count - 1)


@dataclass(frozen=True)
class EstimatorStatistics:
    coordinates: RunningMoments  # of ĝ (P,)
    projections: RunningMoments  # of ĝ projected on each part's direction (K,)


def gradient_statistics(draws: Iterator[torch.Tensor], directions: torch.Tensor) -> EstimatorStatistics:
    """Moments of every coordinate of ĝ (P,) and of its projections on `directions` (K, P) -> (K,)."""
    statistics = EstimatorStatistics(RunningMoments(), RunningMoments())
    for draw in draws:
        statistics.coordinates.add(draw)
        statistics.projections.add(directions @ draw.to(directions.dtype))
    return statistics


def layer_directions(mean_gradient: torch.Tensor, parts: list[slice]) -> torch.Tensor:
    """One unit vector per part (K, P): the mean gradient restricted to the part and normalized (0 if it is 0)."""
    directions = torch.zeros(len(parts), mean_gradient.numel(), dtype=torch.float64, device=mean_gradient.device)
    for row, part in enumerate(parts):
        norm = mean_gradient[part].norm()
        if norm > 0:
            directions[row, part] = mean_gradient[part] / norm
    return directions


@dataclass(frozen=True)
class LayerVariance:
    """One layer (or the whole encoder): trace of Cov ĝ for both estimators, and how well their means agree."""

    name: str
    description: str
    size: int
    score_function_variance: float  # Σ over the layer's scalars of Var ĝ
    pathwise_variance: float
    mean_gradient_norm: float  # ‖E ĝ‖ estimated by the (much less noisy) pathwise mean
    mean_difference_z: float  # (u·m_sf − u·m_pw) / its standard error along the pilot's mean direction u: ~N(0, 1)
    mean_difference_z2: float  # mean over scalars of (m_sf − m_pw)² / (se_sf² + se_pw²): near 1 if unbiased

    @property
    def ratio(self) -> float:
        return self.score_function_variance / self.pathwise_variance if self.pathwise_variance > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ratio": self.ratio}


def compare_part(
    name: str, description: str, sf: EstimatorStatistics, pw: EstimatorStatistics, part: slice, row: int
) -> LayerVariance:
    """Compare the estimators on the scalars `part` of ĝ, whose direction is row `row` of the projections."""
    sf_variance, pw_variance = sf.coordinates.variance[part], pw.coordinates.variance[part]
    standard_error2 = sf_variance / sf.coordinates.count + pw_variance / pw.coordinates.count
    difference2 = (sf.coordinates.mean[part] - pw.coordinates.mean[part]).square()
    varying = standard_error2 > 0  # e.g. a dead ReLU unit's weights get exactly zero gradient from both
    z2 = (difference2[varying] / standard_error2[varying]).mean().item() if varying.any() else math.nan
    projected_se = math.sqrt(sf.projections.variance[row] / sf.projections.count
                             + pw.projections.variance[row] / pw.projections.count)
    projected_difference = (sf.projections.mean[row] - pw.projections.mean[row]).item()
    return LayerVariance(
        name=name,
        description=description,
        size=part.stop - part.start,
        score_function_variance=sf_variance.sum().item(),
        pathwise_variance=pw_variance.sum().item(),
        mean_gradient_norm=pw.coordinates.mean[part].norm().item(),
        mean_difference_z=projected_difference / projected_se if projected_se > 0 else math.nan,
        mean_difference_z2=z2,
    )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


@dataclass(frozen=True)
class GradientVarianceSettings:
    batch_size: int = 64  # the fixed minibatch; 64 examples keep each draw quick on a CPU
    draws: int = 400  # gradient draws per estimator: the variance traces' relative error is then a few percent
    kl: str = "sampled"  # sampled: both estimators differentiate the same one-sample ELBO; analytic: training's form
    seed: int = 0  # picks the minibatch (and a fresh model's weights) and seeds the one torch.Generator for ε

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, f"--batch-size {self.batch_size}: the minibatch needs at least 1 example")
        _check(self.draws >= 2, f"--draws {self.draws}: a variance needs at least 2 gradient draws; try 400")
        _check(self.kl in KL_FORMS, f"--kl {self.kl!r}: choose one of {', '.join(KL_FORMS)}")


@dataclass
class GradientVarianceReport:
    description: str  # which model and data
    settings: GradientVarianceSettings
    total: LayerVariance
    layers: list[LayerVariance] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.description,
            "settings": self.settings.__dict__,
            "total": self.total.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }


def measure_gradient_variance(
    model: VAE,
    x: torch.Tensor,
    settings: GradientVarianceSettings,
    description: str = "",
    surrogates: dict[str, Surrogate] = SURROGATES,
) -> GradientVarianceReport:
    """Draw ĝ `settings.draws` times with each estimator on the minibatch x (B, *event_shape) and compare.

    A pilot set of as many pathwise draws, independent of the compared ones, fixes each layer's
    mean-gradient direction, along which the two means are compared with an exact scalar z-test.
    `surrogates` maps "score_function" and "pathwise" to their surrogate objectives (replaceable, to
    test the comparison itself). Weights are not changed; every ε comes from one generator seeded
    with `settings.seed`.
    """
    generator = torch.Generator(device=x.device).manual_seed(settings.seed)
    model.eval()
    layers = encoder_layers(model)
    ends = np.cumsum([layer.size for layer in layers]).tolist()
    parts = [slice(end - layer.size, end) for layer, end in zip(layers, ends)] + [slice(0, ends[-1])]

    def draw(name: str) -> Iterator[torch.Tensor]:
        return gradient_draws(model, x, surrogates[name], settings.kl, settings.draws, generator)

    pilot = RunningMoments()
    for gradient in draw(PATHWISE):
        pilot.add(gradient)
    directions = layer_directions(pilot.mean, parts)
    sf, pw = (gradient_statistics(draw(name), directions) for name in (SCORE_FUNCTION, PATHWISE))
    names = [(layer.name, layer.description) for layer in layers] + [("encoder", "all encoder parameters")]
    compared = [compare_part(name, text, sf, pw, part, row)
                for row, ((name, text), part) in enumerate(zip(names, parts))]
    return GradientVarianceReport(description, settings, total=compared[-1], layers=compared[:-1])


def fixed_minibatch(stored: np.ndarray, to_model: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                    seed: int, device: torch.device) -> torch.Tensor:
    """`batch_size` examples drawn without replacement by `seed`, in model units (B, *event_shape)."""
    if batch_size > len(stored):
        raise UserError(f"--batch-size {batch_size}: the data has only {len(stored)} examples to draw from")
    chosen = np.random.default_rng(seed).choice(len(stored), batch_size, replace=False)
    return to_model(torch.as_tensor(stored[np.sort(chosen)]).to(device))


def trained_model_and_batch(
    run_dir: Path, settings: GradientVarianceSettings, device: torch.device
) -> tuple[VAE, torch.Tensor, str]:
    """A run's best weights and a fixed minibatch of its test split."""
    from vaekit.data.loading import load_data
    from vaekit.runs.directory import load_model

    model, config, info = load_model(run_dir, device)
    if info.kind == TEXT:
        raise UserError(f"{run_dir} is a text run; the gradient-variance study measures the VAE of images, sounds "
                        "and tables, whose p(x|z) is one distribution object, not a sentence VAE's GRU decoder")
    if model.classes:
        raise UserError(f"{run_dir} is a conditional VAE; the gradient-variance study measures plain ones, of "
                        "q(z|x) alone")
    splits = load_data(config.data)
    x = fixed_minibatch(splits.test.x, info.make_codec().to_model, settings.batch_size, settings.seed, device)
    return model, x, f"trained run {run_dir} ({info.description})"


def fresh_model_and_batch(
    config: RunConfig, settings: GradientVarianceSettings, device: torch.device
) -> tuple[VAE, torch.Tensor, str]:
    """A freshly initialized model for `config`'s data (weights seeded by `settings.seed`) and a test minibatch."""
    from vaekit.data.loading import load_data
    from vaekit.data.source import resolve_likelihood

    splits = load_data(config.data)
    if splits.raw.kind == TEXT:
        raise UserError(f"{config.data.source}: is text; the gradient-variance study measures the VAE of images, "
                        "sounds and tables, not a sentence VAE")
    with torch.random.fork_rng(devices=[]):  # initialization draws from the global generator; keep the caller's intact
        torch.manual_seed(settings.seed)
        model = VAE(config.model, splits.event_shape, resolve_likelihood(config.model.likelihood, splits))
    x = fixed_minibatch(splits.test.x, splits.codec.to_model, settings.batch_size, settings.seed, device)
    return model.to(device), x, f"freshly initialized model ({splits.raw.description})"


def save_layer_figure(report: GradientVarianceReport, path: Path) -> None:
    """Per-layer bars of the variance trace for both estimators (log scale), the ratio above each pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [*report.layers, report.total]
    positions = np.arange(len(rows))
    width = 0.38
    figure, axis = plt.subplots(figsize=(max(6.0, 1.4 * len(rows) + 2), 4.5), dpi=100)
    axis.bar(positions - width / 2, [r.score_function_variance for r in rows], width, color="tab:red",
             label="score function")
    axis.bar(positions + width / 2, [r.pathwise_variance for r in rows], width, color="tab:blue",
             label="pathwise (reparameterized)")
    for position, row in zip(positions, rows):
        axis.annotate(f"×{row.ratio:,.0f}", (position, row.score_function_variance), ha="center", va="bottom",
                      fontsize=9, xytext=(0, 3), textcoords="offset points")
    axis.set_xticks(positions, [f"{r.name}\n{r.description}" for r in rows], fontsize=8)
    axis.set_yscale("log")
    axis.set_ylim(top=40 * max(r.score_function_variance for r in rows))  # room for the ratios and the legend
    axis.set_ylabel("trace of Cov ĝ (sum of per-parameter variances)")
    settings = report.settings
    axis.set_title(f"Encoder gradient variance, {settings.draws} draws, batch {settings.batch_size}, KL {settings.kl}\n"
                   f"{report.description}", fontsize=9)
    axis.grid(alpha=0.3, axis="y", which="both")
    axis.legend(loc="upper left", ncol=2)
    figure.tight_layout()
    save_figure(figure, path)
