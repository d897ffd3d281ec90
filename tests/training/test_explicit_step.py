"""training/explicit_step.py: the hand-written MLP step computes autograd's gradients, loss and sums (to float32
rounding), takes the runs it suits and no others, and keeps the finite check's guarantees."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from vaekit.api import train
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data.batch import Batch
from vaekit.data.loading import load_data
from vaekit.model.vae import VAE
from vaekit.runs.directory import read_config
from vaekit.training.explicit_step import ExplicitStep, explicit_step_suits
from vaekit.training.guard import NonFinite
from vaekit.training.loop import Trainer, step_parts
from vaekit.training.step import EagerStep, StepAt

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
# The sums run in another order than autograd's, so the numbers agree to float32 rounding, not bit for bit.
GRADIENT_TOLERANCE = 1e-5  # of the largest entry of each gradient


def both_steps(model_config: ModelConfig, train_config: TrainConfig, binarize: bool = False, shape=(1, 8, 8)):
    """The eager and the explicit step of one model, each on its own copy of the same initial weights."""
    torch.manual_seed(0)
    model = VAE(model_config, shape, "bernoulli")
    eager = EagerStep(step_parts(model, train_config, CPU, binarize))
    explicit = ExplicitStep(step_parts(copy.deepcopy(model), train_config, CPU, binarize))
    return eager, explicit


CASES = {
    "reference shape": (ModelConfig(), TrainConfig(), 1.0, False, (1, 28, 28)),
    "two layers, L = 3, free bits, β, binarized": (
        ModelConfig(hidden_sizes=(48, 24), latent_dim=6), TrainConfig(mc_samples=3, free_bits=0.3), 0.4, True,
        (1, 8, 8)),
    "no hidden layer": (ModelConfig(hidden_sizes=(), latent_dim=4), TrainConfig(), 1.0, False, (3, 4, 4)),
    "free bits flooring every dimension": (
        ModelConfig(hidden_sizes=(16,), latent_dim=3), TrainConfig(free_bits=50.0), 1.0, False, (1, 8, 8)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_loss_and_sums_equal_autograds(case):
    model_config, train_config, beta, binarize, shape = CASES[case]
    eager, explicit = both_steps(model_config, train_config, binarize, shape)
    x = torch.rand(40, *shape, generator=torch.Generator().manual_seed(1))
    loss, terms = eager.forward_backward(Batch(x), beta)
    explicit_loss, sums = explicit.gradient(Batch(x), beta)
    torch.testing.assert_close(explicit_loss, loss.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sums, terms.sums(), rtol=1e-5, atol=1e-4)
    for (name, p), q in zip(eager.parts.model.named_parameters(), explicit.parts.optimizer.params):
        got, want = explicit.gradients[id(q)], p.grad
        largest = float(want.abs().max())
        assert float((got - want).abs().max()) <= GRADIENT_TOLERANCE * max(largest, 1e-12), name
    # both drew the same ε (and the same binarization) from their run's generator
    assert torch.equal(eager.parts.randomness.noise.get_state(), explicit.parts.randomness.noise.get_state())


def test_a_wrong_gradient_would_be_seen():
    """The comparison above can fail: a gradient off by one part in 10,000 is outside the tolerance."""
    eager, explicit = both_steps(*CASES["reference shape"][:2], shape=(1, 28, 28))
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    eager.forward_backward(Batch(x), 1.0)
    explicit.gradient(Batch(x), 1.0)
    weight = explicit.parts.model.encoder.heads.loc.weight
    got, want = explicit.gradients[id(weight)] * (1 + 1e-4), eager.parts.model.encoder.heads.loc.weight.grad
    assert float((got - want).abs().max()) > GRADIENT_TOLERANCE * float(want.abs().max())


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig())


SMALL = ModelConfig(hidden_sizes=(32,), latent_dim=4)


def trainer(digits, tmp_path: Path, model_config: ModelConfig = SMALL, **settings) -> Trainer:
    torch.manual_seed(0)
    likelihood = settings.pop("likelihood", "bernoulli")
    model = VAE(model_config, digits.event_shape, likelihood)
    return Trainer(model, digits, TrainConfig(batch_size=32, seed=3, **settings), tmp_path, CPU, progress_bar=False)


def test_the_runs_it_suits_take_it_and_the_others_autograds(digits, tmp_path: Path):
    assert isinstance(trainer(digits, tmp_path / "a").step, ExplicitStep)
    assert isinstance(trainer(digits, tmp_path / "b", mc_samples=2, free_bits=0.1, beta=0.5).step, ExplicitStep)
    asked = trainer(digits, tmp_path / "c", step="autograd")
    assert isinstance(asked.step, EagerStep) and explicit_step_suits(asked.parts, CPU)
    others = {
        "iwae": trainer(digits, tmp_path / "d", objective="iwae"),
        "gaussian": trainer(digits, tmp_path / "e", likelihood="gaussian"),
        "tanh": trainer(digits, tmp_path / "f", ModelConfig(hidden_sizes=(32,), activation="tanh")),
        "gated": trainer(digits, tmp_path / "g", ModelConfig(hidden_sizes=(32,), activation="gated")),
        "conv": trainer(digits, tmp_path / "h", ModelConfig(architecture="conv", conv_channels=(4,))),
    }
    for name, fitting in others.items():
        assert isinstance(fitting.step, EagerStep), name
        assert not explicit_step_suits(fitting.parts, CPU), name
    torch.manual_seed(0)
    conditional = VAE(ModelConfig(hidden_sizes=(32,)), digits.event_shape, "bernoulli", classes=10)
    assert not explicit_step_suits(step_parts(conditional, TrainConfig(), CPU, False), CPU)


def test_a_step_frees_its_gradients_and_moves_the_weights_as_the_eager_one(digits, tmp_path: Path):
    runs = [trainer(digits, tmp_path / step, step=step) for step in ("auto", "autograd")]
    batch = Batch(runs[0].data.codec.to_model(runs[0].data.stored[:32]))
    for number in range(1, 4):
        sums = [fitting.step(batch, StepAt(number, 1.0, 1e-3, 32)) for fitting in runs]
        torch.testing.assert_close(sums[0], sums[1], rtol=1e-5, atol=1e-4)
    for fitting in runs:
        assert all(p.grad is None for p in fitting.model.parameters())
    for a, b in zip(*(fitting.model.parameters() for fitting in runs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(*(fitting.parts.average.average for fitting in runs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_non_finite_gradient_is_named_and_nothing_is_updated(digits, tmp_path: Path, monkeypatch):
    fitting = trainer(digits, tmp_path)
    step = fitting.step
    assert isinstance(step, ExplicitStep)
    backward = step._backward

    def poisoned(*args):  # a fault injected after the backward pass: a NaN in one gradient, the loss finite
        backward(*args)
        step.gradients[id(fitting.model.decoder.out.bias)][3] = float("nan")

    monkeypatch.setattr(step, "_backward", poisoned)
    before = [p.detach().clone() for p in fitting.model.parameters()]
    batch = Batch(fitting.data.codec.to_model(fitting.data.stored[:32]))
    with pytest.raises(NonFinite, match=r"the gradient of decoder\.out\.bias"):
        step(batch, StepAt(1, 1.0, 1e-3, 32))
    assert all(torch.equal(a, b) for a, b in zip(before, fitting.model.parameters()))


def test_a_non_finite_loss_is_named(digits, tmp_path: Path):
    fitting = trainer(digits, tmp_path)
    batch = Batch(fitting.data.codec.to_model(fitting.data.stored[:32]))
    with torch.no_grad():
        fitting.model.encoder.heads.log_variance.bias.fill_(1e4)  # σ² = e^10000: an infinite KL
    with pytest.raises(NonFinite, match="the loss"):
        fitting.step(batch, StepAt(1, 1.0, 1e-3, 32))


def test_a_whole_run_ends_where_autograds_does(tmp_path: Path):
    """Three epochs of digits with the explicit step and with autograd's: the same test figures to 1e-4 nats
    (rounding differences do not grow into another run)."""
    results = {}
    for step in ("auto", "autograd"):
        config = RunConfig(model=ModelConfig(hidden_sizes=(64,), latent_dim=8),
                           train=TrainConfig(epochs=3, seed=2, step=step, threads=1))
        train(config, tmp_path / step, progress=False)
        results[step] = json.loads((tmp_path / step / "results.json").read_text())
    for key in ("test_elbo", "test_reconstruction", "test_kl"):
        assert results["auto"][key] == pytest.approx(results["autograd"][key], rel=1e-4, abs=1e-4), key


def test_a_run_from_before_the_explicit_step_resumes_with_autograds(tmp_path: Path):
    config = RunConfig(model=ModelConfig(hidden_sizes=(16,), latent_dim=2), train=TrainConfig(epochs=1))
    train(config, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "config.json"
    raw = json.loads(path.read_text())
    assert raw["config"]["train"]["step"] == "auto"
    del raw["config"]["train"]["step"]  # as a run of an older vaekit wrote it
    path.write_text(json.dumps(raw))
    assert read_config(tmp_path / "run")[0].train.step == "autograd"


def test_the_command_line_chooses_the_step_and_a_resume_keeps_it(tmp_path: Path, cli):
    run = tmp_path / "run"
    done = cli("train", "--epochs", "1", "--hidden-sizes", "16", "--latent-dim", "2", "--quiet", "--step", "autograd",
               "--out", run)
    assert done.code == 0, done.err
    assert json.loads((run / "config.json").read_text())["config"]["train"]["step"] == "autograd"
    refused = cli("train", "--resume", run, "--epochs", "2", "--step", "auto", "--quiet")
    assert refused.code == 2 and "cannot change --step" in refused.err
    assert "--step" in cli("train", "--help").out
