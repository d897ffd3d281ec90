"""The objective options of objectives.py and the trainer: β, KL warm-up, free bits, IWAE, L samples.

Each is checked against its definition: the loss value and, where an option is meant to cut a
gradient (free bits), the gradient itself.
"""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.api import train
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import load_data
from vaekit.data.batch import Batch
from vaekit.model.objectives import BoundTerms, Elbo, Iwae, log_importance_weights
from vaekit.model.vae import VAE, reparameterize
from vaekit.training.loop import Trainer
from vaekit.training.signals import StopRequest, TrainingInterrupted


@pytest.fixture
def model() -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(latent_dim=4, hidden_sizes=(16,)), (1, 5, 5), "bernoulli")


@pytest.fixture
def x() -> torch.Tensor:
    return torch.bernoulli(torch.rand(32, 1, 5, 5, generator=torch.Generator().manual_seed(1)))


def _gradients(model: VAE, loss: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


# ----- β and the ELBO ------------------------------------------------------------------------------

def test_default_loss_is_minus_elbo(model, x):
    terms = Elbo().terms(model, Batch(x), torch.Generator().manual_seed(0))
    assert torch.allclose(Elbo().loss(terms), -terms.bound.mean())


def test_beta_weights_the_kl(model, x):
    terms = Elbo().terms(model, Batch(x), torch.Generator().manual_seed(0))
    for beta in (0.0, 0.3, 4.0):
        expected = -(terms.reconstruction.mean() - beta * terms.kl.mean())
        assert torch.allclose(Elbo().loss(terms, beta), expected)


# ----- KL warm-up --------------------------------------------------------------------------------

def _trainer(tmp_path, **train_settings) -> Trainer:
    tmp_path.mkdir(exist_ok=True)
    torch.manual_seed(0)
    splits = load_data(DataConfig())
    model = VAE(ModelConfig(latent_dim=2, hidden_sizes=(8,)), splits.event_shape, "bernoulli")
    return Trainer(model, splits, TrainConfig(**train_settings), tmp_path, torch.device("cpu"), progress_bar=False)


def test_warmup_ramps_beta_linearly_per_step(tmp_path):
    trainer = _trainer(tmp_path, warmup_epochs=2, beta=0.5)
    ramp = 2 * trainer.data.steps_per_epoch
    for step, expected in [(0, 0.0), (ramp // 4, 0.5 * (ramp // 4) / ramp), (ramp // 2, 0.25), (ramp, 0.5),
                           (3 * ramp, 0.5)]:
        assert trainer.schedules.beta(step) == pytest.approx(expected)


def test_no_warmup_keeps_beta(tmp_path):
    trainer = _trainer(tmp_path, beta=0.7)
    for step in (0, 1, 10_000):
        assert trainer.schedules.beta(step) == pytest.approx(0.7)


def test_warmup_schedule_in_a_real_run(tmp_path):
    """Training with warm-up over 4 epochs records β = 1/4, 2/4, 3/4, 1, 1 at the epochs' ends."""
    config = RunConfig(model=ModelConfig(latent_dim=4, hidden_sizes=(32,)),
                       train=TrainConfig(epochs=5, warmup_epochs=4, patience=None))
    run = train(config, tmp_path / "run")
    assert [record["beta"] for record in run.metrics] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


# ----- learning-rate schedule ------------------------------------------------------------------------

def test_cosine_schedule_falls_from_the_rate_to_zero_per_step(tmp_path):
    trainer = _trainer(tmp_path, epochs=4, learning_rate=2e-3, lr_schedule="cosine")
    total = 4 * trainer.data.steps_per_epoch
    for step, expected in [(0, 2e-3), (total // 2, 1e-3), (total, 0.0), (2 * total, 0.0)]:
        assert trainer.schedules.learning_rate(step) == pytest.approx(expected, abs=1e-12)
    assert trainer.schedules.learning_rate(total // 4) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)))


def test_constant_schedule_keeps_the_rate(tmp_path):
    trainer = _trainer(tmp_path, epochs=4, learning_rate=3e-4)
    for step in (0, 7, 10_000):
        assert trainer.schedules.learning_rate(step) == 3e-4


def test_cosine_schedule_reaches_adam_and_resumes_exactly(tmp_path):
    """The step size Adam uses is the schedule's; a run stopped mid-epoch and resumed ends with the
    weights of one that was never stopped."""
    whole = _trainer(tmp_path / "whole", epochs=3, learning_rate=1e-2, lr_schedule="cosine", patience=None)
    whole.fit()
    last = whole.schedules.learning_rate(whole.progress.global_step - 1)  # the last step's
    assert whole.parts.optimizer.param_groups[0]["lr"] == pytest.approx(last, abs=1e-12)
    assert last > 0

    first = _trainer(tmp_path / "cut", epochs=3, learning_rate=1e-2, lr_schedule="cosine", patience=None)
    stop = StopRequest()
    stop.request()  # stops after the first step of the first epoch, with a checkpoint
    with pytest.raises(TrainingInterrupted):
        first.fit(stop)
    second = _trainer(tmp_path / "cut", epochs=3, learning_rate=1e-2, lr_schedule="cosine", patience=None)
    second.resume()
    second.fit()
    for a, b in zip(whole.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


def test_cosine_schedule_in_a_real_run_records_the_rate(tmp_path):
    config = RunConfig(model=ModelConfig(latent_dim=4, hidden_sizes=(32,)),
                       train=TrainConfig(epochs=4, learning_rate=1e-3, lr_schedule="cosine", patience=None))
    run = train(config, tmp_path / "run")
    rates = [record["learning_rate"] for record in run.metrics]
    assert rates == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4)], abs=1e-12)


# ----- free bits ---------------------------------------------------------------------------------

def _terms(kl_per_dim: torch.Tensor, reconstruction: torch.Tensor) -> BoundTerms:
    kl = kl_per_dim.sum(-1)
    return BoundTerms(reconstruction - kl, reconstruction, kl, kl_per_dim)


def test_free_bits_floor_each_batch_averaged_dimension():
    kl_per_dim = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.2]], requires_grad=True)  # batch means 0.2, 3, 0.1
    reconstruction = torch.tensor([-10.0, -20.0])
    loss = Elbo(free_bits=0.5).loss(_terms(kl_per_dim, reconstruction), 1.0)
    assert loss.item() == pytest.approx(15.0 + 0.5 + 3.0 + 0.5)
    loss.backward()
    # Dimensions under the floor get no gradient (they are free); the one above it gets the usual 1/B.
    assert torch.equal(kl_per_dim.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))


def test_free_bits_use_the_batch_average_not_each_example():
    """An example's KL under the floor still counts when the batch average of its dimension is above it."""
    kl_per_dim = torch.tensor([[0.1], [1.9]], requires_grad=True)  # mean 1.0 > floor 0.5
    Elbo(free_bits=0.5).loss(_terms(kl_per_dim, torch.zeros(2))).backward()
    assert torch.equal(kl_per_dim.grad, torch.tensor([[0.5], [0.5]]))


def test_huge_free_bits_cut_the_kl_gradient_entirely(model, x):
    """With every dimension under the floor, training follows the reconstruction alone (like β = 0)."""
    free = _gradients(model, Elbo(free_bits=1e6).loss(Elbo().terms(model, Batch(x), torch.Generator().manual_seed(0))))
    no_kl = _gradients(model, Elbo().loss(Elbo().terms(model, Batch(x), torch.Generator().manual_seed(0)), 0.0))
    assert all(torch.allclose(a, b) for a, b in zip(free, no_kl))


def test_zero_free_bits_is_the_elbo(model, x):
    terms = Elbo().terms(model, Batch(x), torch.Generator().manual_seed(0))
    assert torch.allclose(Elbo(free_bits=0.0).loss(terms), -terms.bound.mean())


# ----- L Monte-Carlo samples -----------------------------------------------------------------------

def test_mc_samples_average_the_reconstruction(model, x):
    terms = Elbo(6).terms(model, Batch(x), torch.Generator().manual_seed(2))
    loc, log_variance = model.encode(Batch(x))
    z = reparameterize(loc, log_variance, 6, torch.Generator().manual_seed(2))
    expected = torch.stack([model.observation_model(z[i]).log_prob(x) for i in range(6)]).mean(0)
    assert torch.allclose(terms.reconstruction, expected, atol=1e-5)


def test_more_mc_samples_lower_the_variance(model, x):
    """The ELBO estimate with L = 16 varies about 4x less in standard deviation than with L = 1."""
    with torch.no_grad():
        spread = {
            samples: torch.stack([Elbo(samples).terms(model, Batch(x), torch.Generator().manual_seed(s)).bound.mean()
                                  for s in range(100)]).std()
            for samples in (1, 16)
        }
    assert spread[16] < spread[1] / 2.5


# ----- the importance-weighted bound ---------------------------------------------------------------

def test_importance_weights_match_torch_distributions(model, x):
    """The hand-written log q(z|x) and log p(z) inside the weights equal the distribution objects'."""
    generator = torch.Generator().manual_seed(3)
    loc, log_variance = model.encode(Batch(x))
    z = reparameterize(loc, log_variance, 7, generator)
    log_likelihood = model.log_likelihood(z, Batch(x))
    weights = log_importance_weights(loc, log_variance, z, log_likelihood)
    expected = log_likelihood + model.prior(z).log_prob(z) - model.posterior(Batch(x)).log_prob(z)
    assert torch.allclose(weights, expected, atol=1e-4)


def test_iwae_loss_is_minus_the_bound_and_ignores_beta(model, x):
    terms = Iwae(5).terms(model, Batch(x), torch.Generator().manual_seed(0))
    assert torch.allclose(Iwae(5).loss(terms, beta=0.1), -terms.bound.mean())


def test_iwae_bound_lies_above_the_elbo(model, x):
    """E[IWAE_K] ≥ ELBO, with K = 1 equal to it in expectation (the ELBO here uses the closed-form KL)."""
    with torch.no_grad():
        def mean_bound(samples: int) -> float:
            return torch.stack([Iwae(samples).terms(model, Batch(x), torch.Generator().manual_seed(s)).bound.mean()
                                for s in range(200)]).mean().item()

        reference = torch.stack([Elbo(1).terms(model, Batch(x), torch.Generator().manual_seed(s)).bound.mean()
                                 for s in range(200)]).mean().item()
        one, five = mean_bound(1), mean_bound(5)
    assert one == pytest.approx(reference, abs=0.05)
    assert five > one + 0.05


def test_iwae_objective_trains(tmp_path):
    """Training on −IWAE (K = 5) improves the validation ELBO and beats an untrained model's bound."""
    # From a random output bias, so that a few epochs have a long way to improve (started at the data's
    # mean, the bound sits on the mean image's plateau for the first epochs on digits).
    config = RunConfig(model=ModelConfig(latent_dim=8, hidden_sizes=(64,)),
                       train=TrainConfig(epochs=4, objective="iwae", iwae_samples=5, patience=None,
                                         output_bias_from_data=False))
    run = train(config, tmp_path / "run")
    scores = [record["val_elbo"] for record in run.metrics]
    assert scores[-1] > scores[0] + 1.0, scores
    # Each figure under its own name: the ELBO is reconstruction − KL, the IWAE bound lies above it, and
    # the best epoch (early stopping, model.safetensors) is the one with the best validation IWAE bound.
    for record in run.metrics:
        for split in ("train", "val"):
            assert record[f"{split}_elbo"] == pytest.approx(record[f"{split}_reconstruction"] - record[f"{split}_kl"])
            assert record[f"{split}_iwae"] > record[f"{split}_elbo"]
    best = max(run.metrics, key=lambda record: record["val_iwae"])
    assert run.results["best_epoch"] == best["epoch"]
    assert run.results["test_iwae"] > run.results["test_elbo"]
    x = torch.as_tensor(run.load_inputs(split="test")[0][:200])
    x = run.codec.to_model(x)
    torch.manual_seed(0)
    untrained = VAE(run.model.config, run.data.event_shape, run.data.likelihood)
    with torch.no_grad():
        trained_bound = Iwae(5).terms(run.model, Batch(x), torch.Generator().manual_seed(0)).bound.mean()
        untrained_bound = Iwae(5).terms(untrained, Batch(x), torch.Generator().manual_seed(0)).bound.mean()
    assert math.isfinite(trained_bound.item()) and trained_bound > untrained_bound + 5.0
