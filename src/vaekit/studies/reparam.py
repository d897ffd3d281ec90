"""The reparameterization trick on the derivation's worked example, measured against closed forms.

Minimize E[x²] over θ with x ~ N(θ, 1): E[x²] = θ² + 1, so the gradient is 2θ and the answer θ = 0.
From one standard normal draw ε, two unbiased estimators of 2θ:

    score function   ĝ = x²·(x − θ),  x = θ + ε    (f(x)·∇θ log N(x; θ, 1))   Var ĝ = θ⁴ + 14θ² + 15
    pathwise         ĝ = 2(θ + ε)                   (∇θ f(θ + ε))              Var ĝ = 4

The score function's variance grows like θ⁴ while the pathwise one stays at 4: the trick's whole point.
Each estimator also carries its fourth central moment in closed form, so that the standard error of
an empirical variance, sqrt((μ₄ − σ⁴)/n), is known exactly rather than estimated from the same sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import UserError
from vaekit.reporting.pictures import save_figure

Array = np.ndarray


def score_function_gradient(theta: Array | float, noise: Array) -> Array:
    """x²·(x − θ) with x = θ + ε: f(x) times the score ∇θ log N(x; θ, 1) = x − θ."""
    x = theta + noise
    return x**2 * noise  # x − θ is ε exactly; computed as (θ + ε) − θ it cancels to 0 once |θ| passes 1e16


def pathwise_gradient(theta: Array | float, noise: Array) -> Array:
    """2(θ + ε): the derivative of f(θ + ε) = (θ + ε)², the sample written as a function of θ."""
    return 2.0 * (theta + noise)


def true_gradient(theta: Array | float) -> Array | float:
    """d/dθ E[x²] = d/dθ (θ² + 1) = 2θ."""
    return 2.0 * theta


@dataclass(frozen=True)
class ToyEstimator:
    """An estimator of 2θ from standard normal noise, with the moments it claims in closed form."""

    name: str
    gradient: Callable[[Any, Array], Array]  # (θ, ε) -> ĝ, broadcasting θ against ε
    variance: Callable[[float], float]  # Var ĝ at θ
    fourth_central_moment: Callable[[float], float]  # E[(ĝ − 2θ)⁴] at θ


SCORE_FUNCTION = ToyEstimator(
    "score_function",
    score_function_gradient,
    variance=lambda t: t**4 + 14 * t**2 + 15,
    fourth_central_moment=lambda t: 3 * t**8 + 300 * t**6 + 5334 * t**4 + 21780 * t**2 + 10395,
)
PATHWISE = ToyEstimator("pathwise", pathwise_gradient, variance=lambda t: 4.0, fourth_central_moment=lambda t: 48.0)
ESTIMATORS: dict[str, ToyEstimator] = {e.name: e for e in (SCORE_FUNCTION, PATHWISE)}

QUADRATURE_POINTS = 16  # Gauss-Hermite with 16 nodes is exact for polynomials in ε up to degree 31


def exact_moments(gradient: Callable[[Any, Array], Array], theta: float) -> tuple[float, float, float]:
    """Mean, variance and fourth central moment of gradient(θ, ε), ε ~ N(0, 1), by Gauss-Hermite quadrature.

    Exact when the estimator is a polynomial in ε (both of ours are cubic or less): an independent
    check of the closed forms above that does not share their algebra.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_POINTS)
    weights = weights / math.sqrt(2 * math.pi)  # the probabilists' weight exp(−ε²/2) integrates to sqrt(2π)
    values = gradient(theta, nodes)
    mean = float(weights @ values)
    centred = values - mean
    return mean, float(weights @ centred**2), float(weights @ centred**4)


@dataclass(frozen=True)
class EstimatorCheck:
    """One estimator at one θ: empirical mean and variance of n draws beside the closed forms."""

    estimator: str
    theta: float
    samples: int
    mean: float
    variance: float  # unbiased sample variance
    expected_mean: float  # 2θ
    expected_variance: float  # the estimator's closed form
    mean_standard_error: float  # sqrt(σ²/n) with the closed-form σ²
    variance_standard_error: float  # sqrt((μ₄ − σ⁴)/n) with the closed-form moments

    @property
    def mean_z(self) -> float:
        """How many standard errors the empirical mean lies from 2θ."""
        return (self.mean - self.expected_mean) / self.mean_standard_error

    @property
    def variance_z(self) -> float:
        """How many standard errors the empirical variance lies from the closed form."""
        return (self.variance - self.expected_variance) / self.variance_standard_error

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean_z": self.mean_z, "variance_z": self.variance_z}


def check_estimator(estimator: ToyEstimator, theta: float, noise: Array) -> EstimatorCheck:
    """Compare n draws ĝ(θ, εᵢ), noise = ε (n,), with 2θ and with what the estimator claims."""
    samples = len(noise)
    draws = estimator.gradient(theta, noise)
    variance = float(estimator.variance(theta))
    # The variance of a sample variance is (μ₄ − σ⁴)/n to first order (exactly (μ₄ − σ⁴(n−3)/(n−1))/n).
    spread = estimator.fourth_central_moment(theta) - variance**2 * (samples - 3) / (samples - 1)
    return EstimatorCheck(
        estimator=estimator.name,
        theta=float(theta),
        samples=samples,
        mean=float(draws.mean()),
        variance=float(draws.var(ddof=1)),
        expected_mean=float(true_gradient(theta)),
        expected_variance=variance,
        mean_standard_error=math.sqrt(variance / samples),
        variance_standard_error=math.sqrt(spread / samples),
    )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


@dataclass(frozen=True)
class DemoSettings:
    theta_values: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)  # from the optimum out to where θ⁴ dominates
    samples: int = 100_000  # draws per θ: the variances' standard errors are then 0.5% (pathwise) to 1.3% (score, θ=3)
    start: float = 3.0  # SGD's starting θ: far enough out that the score function is 55 times noisier than pathwise
    learning_rate: float = 0.02  # small enough that the score function's noise does not throw θ out of reach
    steps: int = 500  # 500 steps shrink the start by (1 − 2·0.02)^500 ≈ 1e-9: what is left is noise
    repeats: int = 20  # independent SGD runs per estimator, enough to measure the spread of the final θ
    seed: int = 0  # one numpy Generator, seeded once, draws every ε of the table and of SGD

    def __post_init__(self) -> None:
        _check(len(self.theta_values) >= 1, "give at least one θ in --theta-values")
        _check(all(math.isfinite(t) for t in self.theta_values), f"--theta-values {self.theta_values}: must be finite")
        _check(self.samples >= 2, f"--samples {self.samples}: a variance needs at least 2 draws per θ; try 100000")
        _check(math.isfinite(self.start), f"--start {self.start}: must be a finite number such as 3")
        _check(
            math.isfinite(self.learning_rate) and 0 < self.learning_rate < 1,
            f"--learning-rate {self.learning_rate}: must be in (0, 1), where the mean step θ ← θ(1 − 2·lr) shrinks θ",
        )
        _check(self.steps >= 1, f"--steps {self.steps}: SGD needs at least 1 step")
        _check(self.repeats >= 2, f"--repeats {self.repeats}: a spread needs at least 2 SGD runs per estimator")


def estimator_table(settings: DemoSettings, rng: np.random.Generator) -> list[EstimatorCheck]:
    """Per θ, both estimators on the same draws ε (common random numbers): rows in θ order."""
    rows = []
    for theta in settings.theta_values:
        noise = rng.standard_normal(settings.samples)
        rows += [check_estimator(estimator, theta, noise) for estimator in ESTIMATORS.values()]
    return rows


def sgd_trajectories(estimator: ToyEstimator, start: float, learning_rate: float, noise: Array) -> Array:
    """θ_{t+1} = θ_t − lr·ĝ(θ_t, ε_t) for every run at once; noise (steps, repeats) -> θ (steps + 1, repeats).

    A run whose θ overflows stays non-finite: divergence is reported, never hidden.
    """
    trajectory = np.empty((noise.shape[0] + 1, noise.shape[1]))
    trajectory[0] = start
    with np.errstate(over="ignore", invalid="ignore"):
        for step, eps in enumerate(noise):
            theta = trajectory[step]
            trajectory[step + 1] = theta - learning_rate * estimator.gradient(theta, eps)
    return trajectory


@dataclass(frozen=True)
class SGDSummary:
    """Where the repeats of one estimator ended."""

    estimator: str
    mean_abs_final: float  # mean over runs of |θ_T|
    final_std: float  # standard deviation over runs of θ_T: the spread the noise leaves
    final_rms: float  # sqrt(mean θ_T²): distance from the optimum, bias and spread together
    diverged: int  # runs whose θ overflowed (excluded from the figures above)

    @classmethod
    def of(cls, name: str, trajectory: Array) -> SGDSummary:
        final = trajectory[-1]
        finite = final[np.isfinite(final)]
        return cls(
            estimator=name,
            mean_abs_final=float(np.abs(finite).mean()) if finite.size else math.nan,
            final_std=float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
            final_rms=float(np.sqrt(np.mean(finite**2))) if finite.size else math.nan,
            diverged=int(final.size - finite.size),
        )


def pathwise_final_std(settings: DemoSettings) -> float:
    """The exact spread of θ_T under pathwise SGD: θ_T = aᵀθ₀ − 2·lr·Σₜ a^(T−1−t) εₜ with a = 1 − 2·lr,
    a Gaussian with variance 4·lr²·(1 − a^(2T)) / (1 − a²). (The score function has no such closed form.)"""
    contraction = 1 - 2 * settings.learning_rate
    decay = 1 - contraction ** (2 * settings.steps)
    return math.sqrt(4 * settings.learning_rate**2 * decay / (1 - contraction**2))


def compare_sgd(settings: DemoSettings, rng: np.random.Generator) -> dict[str, Array]:
    """Trajectories (steps + 1, repeats) per estimator, all driven by the same ε (same step size, same seeds)."""
    noise = rng.standard_normal((settings.steps, settings.repeats))
    return {
        name: sgd_trajectories(estimator, settings.start, settings.learning_rate, noise)
        for name, estimator in ESTIMATORS.items()
    }


@dataclass
class DemoResult:
    settings: DemoSettings
    table: list[EstimatorCheck]
    trajectories: dict[str, Array]  # (steps + 1, repeats) per estimator

    @property
    def sgd(self) -> list[SGDSummary]:
        return [SGDSummary.of(name, trajectory) for name, trajectory in self.trajectories.items()]

    def to_dict(self) -> dict[str, Any]:
        """The table and the SGD summary (not the trajectories), for JSON."""
        return {
            "settings": {**self.settings.__dict__, "theta_values": list(self.settings.theta_values)},
            "table": [row.to_dict() for row in self.table],
            "sgd": [summary.__dict__ for summary in self.sgd],
            "pathwise_final_std_closed_form": pathwise_final_std(self.settings),
        }


def run_demo(settings: DemoSettings) -> DemoResult:
    rng = np.random.default_rng(settings.seed)
    table = estimator_table(settings, rng)
    return DemoResult(settings, table, compare_sgd(settings, rng))


COLOURS = {"score_function": "tab:red", "pathwise": "tab:blue"}
LABELS = {"score_function": "score function x²(x − θ)", "pathwise": "pathwise 2(θ + ε)"}


def save_sgd_figure(result: DemoResult, path: Path) -> None:
    """θ against the step for every run of both estimators, with the final spreads in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    for summary in result.sgd:
        trajectory = result.trajectories[summary.estimator]
        colour = COLOURS[summary.estimator]
        axis.plot(trajectory, color=colour, alpha=0.35, linewidth=0.8)
        axis.plot([], [], color=colour, label=f"{LABELS[summary.estimator]}: final θ spread {summary.final_std:.3f}")
    axis.axhline(0.0, color="black", linewidth=0.8)
    settings = result.settings
    axis.set_title(f"SGD on E[x²], x ~ N(θ, 1): {settings.repeats} runs each, step {settings.learning_rate:g}, same ε")
    axis.set_xlabel("step")
    axis.set_ylabel("θ")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def save_variance_figure(result: DemoResult, path: Path) -> None:
    """Closed-form variance curves against θ, the empirical variances as points with ±2 standard errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thetas = [row.theta for row in result.table]
    grid = np.linspace(min(thetas + [0.0]) - 0.5, max(thetas + [0.0]) + 0.5, 200)
    figure, axis = plt.subplots(figsize=(6, 4.5), dpi=100)
    for name, estimator in ESTIMATORS.items():
        colour = COLOURS[name]
        axis.plot(grid, [estimator.variance(t) for t in grid], color=colour, label=f"{LABELS[name]}, closed form")
        rows = [row for row in result.table if row.estimator == name]
        axis.errorbar([r.theta for r in rows], [r.variance for r in rows],
                      yerr=[2 * r.variance_standard_error for r in rows], fmt="o", color=colour, capsize=3,
                      label=f"empirical ± 2 standard errors, {result.settings.samples} draws")
    axis.set_yscale("log")
    axis.set_xlabel("θ")
    axis.set_ylabel("variance of the gradient estimate")
    axis.set_title("Two unbiased estimators of d/dθ E[x²] = 2θ")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
