"""The toy estimators of vaekit.studies.reparam against their closed forms, and SGD with each.

Tolerances come from the sample size: an empirical mean may lie at most Z standard errors sqrt(σ²/n)
from 2θ, an empirical variance at most Z standard errors sqrt((μ₄ − σ⁴)/n) from its closed form,
with σ² and μ₄ the closed forms (themselves checked by exact quadrature). With Z = 4 and 16
comparisons a correct estimator fails by chance with probability about 1e-3; the seeds are fixed.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from vaekit.errors import UserError
from vaekit.studies.reparam import (
    ESTIMATORS,
    PATHWISE,
    SCORE_FUNCTION,
    DemoSettings,
    SGDSummary,
    ToyEstimator,
    check_estimator,
    compare_sgd,
    exact_moments,
    pathwise_final_std,
    run_demo,
)

Z = 4.0  # standard errors allowed
SAMPLES = 200_000  # per θ: the score function's variance at θ = 3 is then known to ±0.9% (one standard error)
THETAS = (0.0, 1.0, 2.0, 3.0)


def checks_of(estimator: ToyEstimator, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [check_estimator(estimator, theta, rng.standard_normal(SAMPLES)) for theta in THETAS]


def worst_z(checks) -> float:
    return max(max(abs(c.mean_z), abs(c.variance_z)) for c in checks)


@pytest.mark.parametrize("theta", [-2.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("estimator", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_closed_forms_match_exact_quadrature(estimator: ToyEstimator, theta: float):
    """The hand-derived mean 2θ, variance and fourth central moment, against Gauss-Hermite quadrature."""
    mean, variance, fourth = exact_moments(estimator.gradient, theta)
    assert mean == pytest.approx(2 * theta, abs=1e-9)
    assert variance == pytest.approx(estimator.variance(theta), rel=1e-9)
    assert fourth == pytest.approx(estimator.fourth_central_moment(theta), rel=1e-9)


def test_the_issue_closed_forms():
    assert SCORE_FUNCTION.variance(3.0) == 81 + 14 * 9 + 15 == 222
    assert PATHWISE.variance(3.0) == 4


@pytest.mark.parametrize("estimator", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_empirical_mean_and_variance_match_closed_forms(estimator: ToyEstimator):
    checks = checks_of(estimator)
    for check in checks:
        assert abs(check.mean - 2 * check.theta) <= Z * math.sqrt(estimator.variance(check.theta) / SAMPLES)
        assert abs(check.mean_z) <= Z, check
        assert abs(check.variance_z) <= Z, check
    assert worst_z(checks) <= Z


WRONG = {
    # a missing factor: the mean is θ, not 2θ (and the variance 1, not 4)
    "pathwise without the 2": replace(PATHWISE, gradient=lambda t, e: t + e),
    # the right mean 2θ, a variance of 1 instead of 4: only the variance check can see it
    "pathwise with 2 on θ only": replace(PATHWISE, gradient=lambda t, e: 2 * t + e),
    # f(x) = x instead of x²: mean E[x(x − θ)] = 1
    "score function without the square": replace(SCORE_FUNCTION, gradient=lambda t, e: (t + e) * e),
    # x in place of the score x − θ: mean E[x³] = θ³ + 3θ
    "score function with x for the score": replace(SCORE_FUNCTION, gradient=lambda t, e: (t + e) ** 3),
}


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_estimator_is_detected(name: str):
    assert worst_z(checks_of(WRONG[name])) > 3 * Z, name


def test_the_formulas_are_what_autograd_computes():
    """Pathwise: d/dθ of f(θ + ε). Score function: f(x)·d/dθ log N(x; θ, 1) with x held fixed."""
    noise = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for theta_value in (-1.5, 0.0, 2.0):
        theta = torch.tensor(theta_value, dtype=torch.float64, requires_grad=True)
        x = theta + noise
        pathwise, = torch.autograd.grad(x.square().sum(), theta)
        x = x.detach()
        score, = torch.autograd.grad((x.square() * Normal(theta, 1.0).log_prob(x)).sum(), theta)
        assert pathwise.item() == pytest.approx(PATHWISE.gradient(theta_value, noise.numpy()).sum(), rel=1e-12)
        assert score.item() == pytest.approx(SCORE_FUNCTION.gradient(theta_value, noise.numpy()).sum(), rel=1e-12)


@pytest.mark.parametrize("repeats", [20, 400])
def test_both_sgd_runs_approach_zero_and_pathwise_ends_tighter(repeats: int):
    settings = DemoSettings(repeats=repeats)  # start 3, step 0.02, 500 steps, as the CLI's defaults
    trajectories = compare_sgd(settings, np.random.default_rng(settings.seed))
    summaries = {name: SGDSummary.of(name, trajectory) for name, trajectory in trajectories.items()}
    for name, summary in summaries.items():
        final = trajectories[name][-1]
        assert summary.diverged == 0
        assert summary.mean_abs_final < 0.15 * abs(settings.start), name  # from |θ| = 3 to within the noise
        assert abs(final.mean()) <= Z * final.std(ddof=1) / math.sqrt(repeats), name  # centred on θ = 0
    assert summaries["pathwise"].final_std < summaries["score_function"].final_std
    # Pathwise θ_T is exactly Gaussian: its spread must match the closed form, within the sample std's error.
    expected = pathwise_final_std(settings)
    assert abs(summaries["pathwise"].final_std - expected) <= Z * expected / math.sqrt(2 * (repeats - 1))


def test_sgd_uses_the_same_noise_for_both_estimators():
    settings = DemoSettings(steps=3, repeats=4)
    trajectories = compare_sgd(settings, np.random.default_rng(1))
    noise = np.random.default_rng(1).standard_normal((3, 4))
    theta = np.full(4, settings.start)
    theta = theta - settings.learning_rate * PATHWISE.gradient(theta, noise[0])
    np.testing.assert_allclose(trajectories["pathwise"][1], theta)
    score = np.full(4, settings.start) - settings.learning_rate * SCORE_FUNCTION.gradient(settings.start, noise[0])
    np.testing.assert_allclose(trajectories["score_function"][1], score)


def test_a_diverging_run_is_reported_not_hidden():
    settings = DemoSettings(start=30.0, learning_rate=0.5, steps=200, repeats=5)
    result = run_demo(replace(settings, samples=10))
    score = next(s for s in result.sgd if s.estimator == "score_function")
    assert score.diverged > 0
    assert next(s for s in result.sgd if s.estimator == "pathwise").diverged == 0


@pytest.mark.parametrize("field, value, words", [
    ("samples", 0, "--samples 0"),
    ("samples", 1, "at least 2"),
    ("learning_rate", 1.0, "--learning-rate"),
    ("learning_rate", 0.0, "--learning-rate"),
    ("repeats", 1, "--repeats"),
    ("steps", 0, "--steps"),
    ("theta_values", (), "θ"),
    ("theta_values", (1.0, math.inf), "finite"),
    ("start", math.nan, "--start"),
])
def test_bad_settings_are_refused(field: str, value, words: str):
    with pytest.raises(UserError, match=words):
        DemoSettings(**{field: value})


def test_cli_writes_table_figures_and_refuses_to_overwrite(cli, tmp_path):
    out = tmp_path / "demo"
    flags = ["--samples", "20000", "--steps", "300", "--repeats", "10", "--out", out]
    result = cli("reparam-demo", *flags)
    assert result.code == 0, result.err
    assert "score function" in result.out and "closed form" in result.out and "spread" in result.out
    for name in ("estimator_variance.png", "sgd_trajectories.png", "reparam_demo.json"):
        assert (out / name).stat().st_size > 0
    again = cli("reparam-demo", *flags)
    assert again.code == 2 and "--overwrite" in again.err and len(again.err.strip().splitlines()) == 1
    replaced = cli("reparam-demo", *flags, "--overwrite", "--json", "--theta-values", "-1", "0.5,2")
    assert replaced.code == 0
    summary = json.loads(replaced.out)
    assert [row["theta"] for row in summary["table"]] == [-1.0, -1.0, 0.5, 0.5, 2.0, 2.0]
    assert {s["estimator"] for s in summary["sgd"]} == {"score_function", "pathwise"}
    assert all(abs(row["mean_z"]) < Z for row in summary["table"])


@pytest.mark.parametrize("flags, words", [
    (["--samples", "0"], "--samples 0"),
    (["--learning-rate", "2"], "--learning-rate"),
    (["--theta-values", "abc"], "not a number"),
])
def test_cli_bad_settings_are_one_line_errors(cli, tmp_path, flags, words):
    result = cli("reparam-demo", *flags, "--out", tmp_path / "demo")
    assert result.code == 2
    assert words in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "demo" / "sgd_trajectories.png").exists()


def test_cli_help_has_examples(cli):
    result = cli("reparam-demo", "--help")
    assert result.code == 0 and "examples:" in result.out and "θ⁴ + 14θ² + 15" in result.out
