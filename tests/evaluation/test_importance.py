"""evaluation.py: the importance-sampled log-likelihood, against closed forms where they exist.

The reference is probabilistic PCA: a VAE with a linear decoder and a Gaussian likelihood,
p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I), whose marginal is known exactly,
log p(x) = log N(x; b, WWᵀ + σ²I), and whose ELBO has a closed form for a Gaussian q(z|x).
Its encoder is set to a deliberately imperfect posterior (mean shrunk, variance inflated), so
that the K-sample estimate is a genuine bound that must climb to log p(x) as K grows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from helpers import needs_fashion_mnist
from vaekit.config import DataConfig, ModelConfig
from vaekit.data import load_data
from vaekit.data.batch import Batch
from vaekit.data.codec import IdentityCodec
from vaekit.evaluation.importance import (
    ELEMENTS_PER_CHUNK,
    GPU_ELEMENTS_PER_CHUNK,
    active_units,
    chunk_budget,
    evaluate,
    importance_terms,
    log_likelihood,
    running_logsumexp,
    samples_per_chunk,
)
from vaekit.model.objectives import Iwae, gaussian_kl
from vaekit.model.vae import VAE

DATA_DIM, LATENT_DIM = 6, 2
NOISE_STD = 0.5
SHRINK, INFLATE = 0.8, 1.5  # the encoder's mean is 0.8 of the exact one, its variance 1.5 times


class LinearGaussian:
    """Probabilistic PCA as a vaekit VAE, with the exact log p(x) and the closed-form ELBO."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        # Orthogonal columns make the exact posterior covariance diagonal, so q can be set near it.
        basis, _ = torch.linalg.qr(torch.randn(DATA_DIM, LATENT_DIM, generator=generator, dtype=torch.float64))
        self.W = basis * torch.tensor([2.0, 1.2], dtype=torch.float64)  # (P, D)
        self.b = torch.randn(DATA_DIM, generator=generator, dtype=torch.float64)
        config = ModelConfig(latent_dim=LATENT_DIM, hidden_sizes=(), likelihood="gaussian", gaussian_variance="shared")
        self.model = VAE(config, (DATA_DIM,), "gaussian").eval()
        precision = self.W.T @ self.W + NOISE_STD**2 * torch.eye(LATENT_DIM, dtype=torch.float64)  # M
        posterior_map = torch.linalg.solve(precision, self.W.T)  # M⁻¹Wᵀ: E[z|x] = M⁻¹Wᵀ(x − b)
        self.posterior_variance = NOISE_STD**2 / torch.diagonal(precision)  # diag of σ²M⁻¹ (M is diagonal)
        with torch.no_grad():
            self.model.decoder.out.weight.copy_(self.W)
            self.model.decoder.out.bias.copy_(self.b)
            self.model.likelihood.log_scale.fill_(math.log(NOISE_STD))
            heads = self.model.encoder.heads
            heads.loc.weight.copy_(SHRINK * posterior_map)
            heads.loc.bias.copy_(-SHRINK * posterior_map @ self.b)
            heads.log_variance.weight.zero_()
            heads.log_variance.bias.copy_(torch.log(INFLATE * self.posterior_variance))

    def sample(self, count: int, seed: int = 1) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(count, LATENT_DIM, generator=generator, dtype=torch.float64)
        noise = NOISE_STD * torch.randn(count, DATA_DIM, generator=generator, dtype=torch.float64)
        return (z @ self.W.T + self.b + noise).float()

    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        covariance = self.W @ self.W.T + NOISE_STD**2 * torch.eye(DATA_DIM, dtype=torch.float64)
        return MultivariateNormal(self.b, covariance).log_prob(x.double())

    def exact_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """E_q[log N(x; Wz + b, σ²I)] − KL(q ‖ p) = log N(x; Wμ + b, σ²I) − Σⱼ sⱼ²‖Wⱼ‖²/(2σ²) − KL."""
        with torch.no_grad():
            loc, log_variance = (t.double() for t in self.model.encode(Batch(x)))
        mean = loc @ self.W.T + self.b
        fit = Independent(Normal(mean, NOISE_STD), 1).log_prob(x.double())
        spread = (log_variance.exp() * self.W.square().sum(0)).sum(-1) / (2 * NOISE_STD**2)
        return fit - spread - gaussian_kl(loc, log_variance).sum(-1)


@pytest.fixture(scope="module")
def ppca() -> LinearGaussian:
    return LinearGaussian()


def test_linear_gaussian_reference_is_right(ppca):
    """The closed forms agree with each other (ELBO ≤ log p(x)) and with vaekit's own ELBO terms."""
    x = ppca.sample(50)
    exact, bound = ppca.exact_log_marginal(x), ppca.exact_elbo(x)
    assert torch.all(bound < exact)
    assert (exact - bound).mean() > 0.1  # the proposal is imperfect enough for K to matter
    figures = evaluate(ppca.model, x, IdentityCodec(), importance_samples=4000, seed=0)
    assert figures.elbo == pytest.approx(bound.mean().item(), abs=0.02)


def test_estimate_converges_to_exact_log_likelihood(ppca):
    """K = 5000: the mean estimate is within 0.01 nats of the exact log p(x), each example within 0.1."""
    x = ppca.sample(200)
    exact = ppca.exact_log_marginal(x)
    with torch.no_grad():
        terms = importance_terms(ppca.model, x, 5000, torch.Generator().manual_seed(0))
    error = terms.log_marginal.double() - exact
    assert error.mean().abs() < 0.01
    assert error.abs().max() < 0.1
    figures = evaluate(ppca.model, x, IdentityCodec(), importance_samples=5000, seed=0)
    assert figures.nll == pytest.approx(-exact.mean().item(), abs=0.01)
    assert figures.bits_per_dim == pytest.approx(figures.nll / (DATA_DIM * math.log(2)))


def test_one_sample_estimate_equals_elbo_in_expectation(ppca):
    """E[log w] = ELBO for K = 1: the mean over 20,000 draws is within 4 standard errors of the exact ELBO."""
    x = ppca.sample(200).repeat(100, 1)
    with torch.no_grad():
        terms = importance_terms(ppca.model, x, 1, torch.Generator().manual_seed(0))
    difference = terms.log_marginal.double() - ppca.exact_elbo(x)
    standard_error = difference.std() / math.sqrt(len(difference))
    assert difference.mean().abs() < 4 * standard_error
    # ... and the test has power: K = 1 sits clearly below log p(x).
    assert (ppca.exact_log_marginal(x) - terms.log_marginal.double()).mean() > 20 * standard_error


def test_estimate_rises_with_k(ppca):
    """With a fixed seed the mean estimate climbs with K and never passes log p(x) (beyond noise)."""
    x = ppca.sample(300)
    exact = ppca.exact_log_marginal(x).mean().item()
    nll = [evaluate(ppca.model, x, IdentityCodec(), k, seed=0).nll for k in (1, 3, 10, 100)]
    assert all(later < earlier for earlier, later in zip(nll, nll[1:])), nll
    assert nll[0] - nll[-1] > 0.3, nll
    assert nll[-1] > -exact - 0.01


def test_estimate_rises_with_k_for_a_bernoulli_mlp():
    """The same on the everyday model: an untrained Bernoulli MLP on binary images (a poor q)."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=4, hidden_sizes=(32,)), (1, 6, 6), "bernoulli").eval()
    x = (torch.rand(1000, 1, 6, 6, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    nll = [evaluate(model, x, IdentityCodec(), k, seed=0).nll for k in (1, 10, 100)]
    # Over seeds 0-3 the steps were 0.22-0.26 and 0.020-0.039 nats (K = 1000 adds another 0.002-0.005).
    assert nll[0] > nll[1] + 0.1 and nll[1] > nll[2] + 0.01, nll


def test_fast_bernoulli_path_matches_the_distribution():
    """log p(x|z) of the fast path equals Independent(Bernoulli(logits)).log_prob, binary or grey x."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), (1, 4, 5), "bernoulli")
    z = 3 * torch.randn(7, 11, 3)
    for x in (torch.bernoulli(torch.rand(11, 1, 4, 5)), torch.rand(11, 1, 4, 5)):
        expected = model.observation_model(z).log_prob(x)
        assert torch.allclose(log_likelihood(model, z, Batch(x)), expected, rtol=1e-5, atol=1e-4)


def test_one_chunk_matches_the_iwae_objective():
    """With one chunk of K samples, the same draws give the IWAE bound of objectives.py."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), (1, 4, 4), "bernoulli").eval()
    x = torch.bernoulli(torch.rand(9, 1, 4, 4))
    with torch.no_grad():
        ours = importance_terms(model, x, 40, torch.Generator().manual_seed(5), samples_at_once=40)
        theirs = Iwae(40).terms(model, Batch(x), torch.Generator().manual_seed(5))
    assert torch.allclose(ours.log_marginal, theirs.bound, atol=1e-4)
    assert torch.allclose(ours.reconstruction, theirs.reconstruction, atol=1e-4)


def test_running_logsumexp_equals_one_logsumexp():
    """Folding chunks, including weights of −10⁴ that exp() would flush to 0, is logsumexp over all."""
    weights = torch.cat([torch.randn(50, 8) * 30 - 10_000, torch.randn(50, 8)])[torch.randperm(100)]
    running = torch.full((8,), -math.inf)
    for chunk in weights.split(7):
        running = running_logsumexp(running, chunk)
    assert torch.allclose(running, torch.logsumexp(weights, 0), atol=1e-5)
    far = torch.full((3, 2), -10_000.0)
    assert torch.allclose(running_logsumexp(torch.full((2,), -math.inf), far), torch.full((2,), -10_000 + math.log(3)))


def test_chunks_bound_memory_for_any_k():
    assert samples_per_chunk(1000, 784) * 1000 * 784 <= ELEMENTS_PER_CHUNK
    assert samples_per_chunk(1000, 3 * 64 * 64) == 1  # never zero, however large the data
    assert chunk_budget(torch.device("cpu")) == ELEMENTS_PER_CHUNK
    assert chunk_budget(torch.device("cuda")) == GPU_ELEMENTS_PER_CHUNK > ELEMENTS_PER_CHUNK
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=2, hidden_sizes=(8,)), (1, 4, 4), "bernoulli")
    x = torch.bernoulli(torch.rand(30, 1, 4, 4))
    calls = []
    evaluate(model, x, IdentityCodec(), importance_samples=10, batch_size=7, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 5) for i in range(1, 6)]  # 5 batches of ≤ 7 examples, one chunk of 10 samples each


def test_active_units_count_a_collapsed_dimension_as_inactive():
    """A latent whose posterior mean ignores x is inactive; its KL to the prior is 0 when q = p."""
    ppca = LinearGaussian()
    with torch.no_grad():
        heads = ppca.model.encoder.heads
        heads.loc.weight[1].zero_()
        heads.loc.bias[1] = 0.0
        heads.log_variance.bias[1] = 0.0  # q(z₂|x) = N(0, 1) = p(z₂): posterior collapse
    figures = evaluate(ppca.model, ppca.sample(500), IdentityCodec(), importance_samples=5, seed=0)
    assert figures.active_units == 1
    assert figures.posterior_mean_variance[1] == pytest.approx(0.0, abs=1e-12)
    assert figures.posterior_mean_variance[0] > 0.01
    assert figures.kl_per_dim[1] == pytest.approx(0.0, abs=1e-6)
    assert figures.kl == pytest.approx(sum(figures.kl_per_dim))


def test_active_unit_threshold():
    assert active_units(torch.tensor([0.5, 0.0099, 0.0101, 0.0])) == 2


def test_evaluation_is_deterministic_given_seed(ppca):
    x = ppca.sample(40)
    first, again = (evaluate(ppca.model, x, IdentityCodec(), 50, seed=3) for _ in range(2))
    other = evaluate(ppca.model, x, IdentityCodec(), 50, seed=4)
    assert (first.nll, first.elbo) == (again.nll, again.elbo)
    assert first.nll != other.nll


# ----- the command ---------------------------------------------------------------------------------

def test_cli_evaluate_json(cli, digits_run):
    result = cli("evaluate", digits_run, "--importance-samples", "50", "--json", "--quiet")
    assert result.code == 0, result.err
    figures = json.loads(result.out)
    assert figures["examples"] > 0 and figures["importance_samples"] == 50
    assert figures["nll"] > 0
    assert figures["nll"] < -figures["elbo"]  # K = 50 tightens the bound, averaged over the test split
    assert figures["bits_per_dim"] == pytest.approx(figures["nll"] / (64 * math.log(2)))
    assert len(figures["kl_per_dim"]) == figures["latent_dim"] == 20
    assert 0 <= figures["active_units"] <= 20
    again = json.loads(cli("evaluate", digits_run, "--importance-samples", "50", "--json", "--quiet").out)
    assert again["nll"] == figures["nll"]
    one_thread = json.loads(cli("evaluate", digits_run, "--importance-samples", "50", "--json", "--quiet",
                                "--threads", "1").out)
    assert one_thread["nll"] == pytest.approx(figures["nll"], rel=1e-6)


def test_cli_evaluate_text_and_limit(cli, digits_run):
    result = cli("evaluate", digits_run, "--importance-samples", "5", "--limit", "10", "--quiet")
    assert result.code == 0, result.err
    assert "10 examples, K = 5" in result.out and "NLL" in result.out and "active units" in result.out
    # which ELBO this is, beside the one-sample one that `info` shows
    assert "from the same K = 5 samples as the NLL" in result.out


@pytest.mark.parametrize("flags, words", [
    (["--importance-samples", "0"], "K must be at least 1"),
    (["--limit", "0"], "at least one example"),
    (["--threads", "0"], "at least one thread"),
])
def test_cli_evaluate_mistakes_are_one_line(cli, digits_run, flags, words):
    result = cli("evaluate", digits_run, *flags)
    assert result.code == 2
    assert words in result.err and len(result.err.strip().splitlines()) == 1


def test_cli_evaluate_missing_run(cli, tmp_path):
    result = cli("evaluate", tmp_path / "nothing")
    assert result.code == 2 and "no such run directory" in result.err


def test_cli_evaluate_help_has_examples(cli):
    result = cli("evaluate", "--help")
    assert result.code == 0 and "vaekit evaluate runs/" in result.out and "--importance-samples" in result.out


# ----- the papers' protocol on Fashion-MNIST -------------------------------------------------------

@pytest.mark.slow
@needs_fashion_mnist
def test_binarized_fashion_mnist_protocol():
    """50k/10k/10k; validation and test binarized once (the same draw every time); training kept grey."""
    config = DataConfig(source="fashion-mnist", binarize="dynamic", validation_fraction=1 / 6)
    splits, again = load_data(config), load_data(config)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (50_000, 10_000, 10_000)
    for name in ("validation", "test"):
        values = getattr(splits, name).x
        assert set(np.unique(values)) == {0, 255}
        assert np.array_equal(values, getattr(again, name).x)
    assert len(np.unique(splits.train.x)) > 2  # drawn afresh for every batch by the trainer
    # The binarized test set keeps the grey images' mean intensity: each pixel is Bernoulli(grey / 255).
    grey = load_data(DataConfig(source="fashion-mnist", validation_fraction=1 / 6)).test.x
    assert splits.test.x.mean() / 255 == pytest.approx(grey.mean() / 255, abs=2e-3)
