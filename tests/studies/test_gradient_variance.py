"""Score-function versus pathwise gradients of a VAE's encoder (vaekit.studies.gradient_variance).

Unbiasedness is tested where it has power: on a tiny VAE (4 data dimensions, 2 latent) with a large
minibatch, the score function's noise is small enough that a wrong estimator (a missing factor ½,
a z not detached) stands many standard errors away, while the correct pair agrees within Z = 4
along every layer's mean-gradient direction. On the embedded digits the score function is about
10³ times noisier, so there the test checks the ratio and agreement at that (lower) power.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.config import ModelConfig, RunConfig
from vaekit.data.batch import Batch
from vaekit.errors import UserError
from vaekit.model.objectives import Elbo, Iwae
from vaekit.model.vae import VAE
from vaekit.runs.directory import DataInfo, write_config
from vaekit.runs.weights import save_weights
from vaekit.studies.gradient_variance import (
    PATHWISE,
    SCORE_FUNCTION,
    SURROGATES,
    GradientVarianceSettings,
    RunningMoments,
    encoder_layers,
    fresh_model_and_batch,
    measure_gradient_variance,
    pathwise_surrogate,
    score_function_surrogate,
)

Z = 4.0  # standard errors allowed between the two means, per layer direction (5 comparisons)


# Each gradient draw is a tiny computation: one thread is faster than several, above all on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=2, hidden_sizes=(8,)), (4,), "gaussian")
    x = torch.randn(256, 4, generator=torch.Generator().manual_seed(1))
    return model, x


TINY = GradientVarianceSettings(batch_size=256, draws=300, seed=0)


@pytest.mark.parametrize("kl", ["sampled", "analytic"])
def test_the_estimators_agree_in_mean_and_differ_in_variance(tiny, kl: str):
    model, x = tiny
    report = measure_gradient_variance(model, x, GradientVarianceSettings(256, 300, kl, 0))
    for part in [*report.layers, report.total]:
        assert abs(part.mean_difference_z) < Z, part
        assert part.ratio > 5, part
    assert 0.5 < report.total.mean_difference_z2 < 2.0  # near 1 when the coordinates' means agree too


def _half_pathwise(model, x, noise, kl):
    return 0.5 * pathwise_surrogate(model, x, noise, kl)


def _score_function_not_detached(model, x, noise, kl):
    """The classic slip: z keeps its gradient, so the pathwise term is added to the score term."""
    posterior = model.posterior(Batch(x))
    z = posterior.base_dist.loc + posterior.base_dist.scale * noise
    log_q = posterior.log_prob(z)
    f = model.observation_model(z).log_prob(x) + model.prior(z).log_prob(z) - log_q
    return (f.detach() * log_q + f).mean()


@pytest.mark.parametrize("wrong", [
    {PATHWISE: _half_pathwise}, {SCORE_FUNCTION: _score_function_not_detached},
], ids=["pathwise missing a factor 2", "score function with z not detached"])
def test_a_biased_estimator_is_detected(tiny, wrong):
    model, x = tiny
    report = measure_gradient_variance(model, x, TINY, surrogates={**SURROGATES, **wrong})
    assert abs(report.total.mean_difference_z) > 2 * Z


def test_the_pathwise_draw_is_the_trainers_elbo(tiny):
    """With the same ε, the analytic-KL surrogate is objectives.elbo and the sampled one a one-sample IWAE bound."""
    model, x = tiny
    def seeded() -> torch.Generator:  # the same ε on both sides
        return torch.Generator().manual_seed(3)

    noise = torch.randn(1, x.shape[0], model.latent_dim, generator=seeded())
    analytic = pathwise_surrogate(model, x, noise[0], "analytic")
    sampled = pathwise_surrogate(model, x, noise[0], "sampled")
    torch.testing.assert_close(analytic, Elbo(1).terms(model, Batch(x), seeded()).bound.mean())
    torch.testing.assert_close(sampled, Iwae(1).terms(model, Batch(x), seeded()).bound.mean())
    parameters = list(model.encoder.parameters())
    ours = torch.autograd.grad(pathwise_surrogate(model, x, noise[0], "analytic"), parameters)
    trainer = torch.autograd.grad(Elbo(1).terms(model, Batch(x), seeded()).bound.mean(), parameters)
    for a, b in zip(ours, trainer):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kl", ["sampled", "analytic"])
def test_the_score_function_surrogate_has_the_documented_gradient(tiny, kl: str):
    """sampled: (f − 1)·∇φ log q(z|x); analytic: log p(x|z)·∇φ log q(z|x) − ∇φ KL, with z held fixed."""
    model, x = tiny
    noise = torch.randn(x.shape[0], model.latent_dim, generator=torch.Generator().manual_seed(4))
    parameters = list(model.encoder.parameters())
    ours = torch.autograd.grad(score_function_surrogate(model, x, noise, kl), parameters)
    posterior = model.posterior(Batch(x))
    z = (posterior.base_dist.loc + posterior.base_dist.scale * noise).detach()
    log_q = posterior.log_prob(z)
    with torch.no_grad():
        f = model.observation_model(z).log_prob(x)
        if kl == "sampled":
            f = f + model.prior(z).log_prob(z) - log_q - 1
    kl_term = torch.distributions.kl_divergence(posterior, model.prior(x)) if kl == "analytic" else 0
    expected = torch.autograd.grad((f * log_q - kl_term).mean(), parameters)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b)


def test_running_moments_match_torch():
    values = torch.randn(50, 7, generator=torch.Generator().manual_seed(0)) * 3 + 1000  # a large mean
    moments = RunningMoments()
    for row in values:
        moments.add(row)
    torch.testing.assert_close(moments.mean, values.double().mean(0))
    torch.testing.assert_close(moments.variance, values.double().var(0))


def test_layers_cover_every_encoder_parameter(tiny):
    model, _ = tiny
    layers = encoder_layers(model)
    assert [layer.name for layer in layers] == ["body.1.0", "heads.loc", "heads.log_variance"]
    assert sum(layer.size for layer in layers) == sum(p.numel() for p in model.encoder.parameters())


def test_a_fresh_digits_model_measures_a_large_ratio():
    settings = GradientVarianceSettings(batch_size=32, draws=60, seed=0)
    model, x, description = fresh_model_and_batch(RunConfig(), settings, torch.device("cpu"))
    assert x.shape == (32, 1, 8, 8) and "digits" in description
    report = measure_gradient_variance(model, x, settings, description)
    assert report.total.ratio > 100  # about 10³ on the embedded digits
    for part in [*report.layers, report.total]:
        assert abs(part.mean_difference_z) < Z, part
        assert np.isfinite(part.score_function_variance) and part.pathwise_variance > 0


@pytest.mark.parametrize("field, value, words", [
    ("draws", 1, "--draws 1"), ("batch_size", 0, "--batch-size 0"), ("kl", "exact", "--kl"),
])
def test_bad_settings_are_refused(field, value, words):
    with pytest.raises(UserError, match=words):
        GradientVarianceSettings(**{field: value})


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> Path:
    """A run directory holding a freshly initialized model: the layout of `vaekit train` without the training."""
    from vaekit.data import load_data

    config = RunConfig()
    splits = load_data(config.data)
    info = DataInfo(description=splits.raw.description, kind=splits.raw.kind, event_shape=splits.event_shape,
                    likelihood="bernoulli", codec=splits.codec.to_dict(),
                    counts={"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)})
    out = tmp_path_factory.mktemp("runs") / "untrained"
    out.mkdir()
    write_config(out, config, info)
    torch.manual_seed(0)
    save_weights(VAE(config.model, info.event_shape, info.likelihood), out / "model.safetensors")
    return out


def test_cli_on_a_run_writes_figure_and_json_and_refuses_to_overwrite(cli, untrained_run, tmp_path):
    out = tmp_path / "gv"
    flags = [untrained_run, "--draws", "20", "--batch-size", "16", "--out", out]
    result = cli("gradient-variance", *flags, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["total"]["ratio"] > 1 and [layer["name"] for layer in summary["layers"]] == [
        "body.1.0", "heads.loc", "heads.log_variance"]
    assert (out / "gradient_variance.png").stat().st_size > 0
    assert json.loads((out / "gradient_variance.json").read_text())["settings"]["draws"] == 20
    again = cli("gradient-variance", *flags)
    assert again.code == 2 and "--overwrite" in again.err and len(again.err.strip().splitlines()) == 1
    text = cli("gradient-variance", *flags, "--overwrite", "--kl", "analytic")
    assert text.code == 0 and "ratio" in text.out and "heads.loc" in text.out


def test_cli_on_a_fresh_model(cli, tmp_path):
    result = cli("gradient-variance", "--data", "digits", "--draws", "10", "--batch-size", "8", "--out", tmp_path)
    assert result.code == 0, result.err
    assert "freshly initialized" in result.out


@pytest.mark.parametrize("flags, words", [
    ([], "pass RUN_DIR"),
    (["--draws", "0", "--data", "digits"], "--draws 0"),
    (["--data", "digits", "--batch-size", "100000"], "--batch-size 100000"),
    (["no/such/run"], "no such run directory"),
])
def test_cli_mistakes_are_one_line_errors(cli, tmp_path, flags, words):
    result = cli("gradient-variance", *flags, "--out", tmp_path / "gv")
    assert result.code == 2
    assert words in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "gv" / "gradient_variance.png").exists()


def test_cli_run_and_data_together_is_an_error(cli, untrained_run, tmp_path):
    result = cli("gradient-variance", untrained_run, "--data", "digits", "--out", tmp_path)
    assert result.code == 2 and "not both" in result.err
