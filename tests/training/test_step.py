"""training/step.py: one step frees its gradients, returns the batch's sums and applies the schedules' values.
These are autograd's step (`step="autograd"`); tests/training/test_explicit_step.py has the explicit one's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaekit.config import DataConfig, ModelConfig, TrainConfig
from vaekit.data.batch import Batch
from vaekit.data.loading import load_data
from vaekit.model.objectives import Elbo
from vaekit.model.vae import VAE
from vaekit.training.guard import NonFinite
from vaekit.training.loop import Trainer
from vaekit.training.step import EagerStep, StepAt

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig())


def trainer(digits, tmp_path: Path, **settings) -> Trainer:
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), digits.event_shape, "bernoulli")
    settings.setdefault("step", "autograd")
    return Trainer(model, digits, TrainConfig(batch_size=32, seed=3, **settings), tmp_path, torch.device("cpu"),
                   progress_bar=False)


def first_batch(fitting: Trainer) -> Batch:
    return Batch(fitting.data.codec.to_model(fitting.data.stored[:32]))


def test_a_step_frees_its_gradients_and_returns_the_batch_sums(digits, tmp_path: Path):
    fitting = trainer(digits, tmp_path)
    batch = first_batch(fitting)
    before = Elbo(1).terms(fitting.model, batch, torch.Generator().manual_seed(3))  # the noise the step will draw
    assert isinstance(fitting.step, EagerStep)
    sums = fitting.step(batch, StepAt(number=1, beta=1.0, learning_rate=1e-3, global_batch=32))
    assert all(p.grad is None for p in fitting.model.parameters())
    assert not sums.requires_grad
    torch.testing.assert_close(sums, before.sums())


def test_a_step_takes_the_step_size_it_is_given(digits, tmp_path: Path):
    runs = [trainer(digits, tmp_path / str(rate), learning_rate=1e-3) for rate in (0.0, 1e-2)]
    before = [p.detach().clone() for p in runs[0].model.parameters()]
    for fitting, rate in zip(runs, (0.0, 1e-2)):
        fitting.step(first_batch(fitting), StepAt(number=1, beta=1.0, learning_rate=rate, global_batch=32))
        assert fitting.parts.optimizer.param_groups[0]["lr"] == rate
    assert all(torch.equal(a, b) for a, b in zip(before, runs[0].model.parameters())), "a zero step moved"
    assert not all(torch.equal(a, b) for a, b in zip(before, runs[1].model.parameters()))


def test_a_non_finite_gradient_is_named_and_nothing_is_updated(digits, tmp_path: Path):
    fitting = trainer(digits, tmp_path)
    fitting.model.decoder.out.bias.register_hook(lambda grad: grad * float("nan"))
    before = [p.detach().clone() for p in fitting.model.parameters()]
    with pytest.raises(NonFinite, match=r"the gradient of decoder\.out\.bias"):
        fitting.step(first_batch(fitting), StepAt(number=1, beta=1.0, learning_rate=1e-3, global_batch=32))
    assert all(torch.equal(a, b) for a, b in zip(before, fitting.model.parameters()))


def test_bf16_on_a_cpu_warns_and_trains_in_float32(digits, tmp_path: Path, caplog):
    fitting = trainer(digits, tmp_path, precision="bf16")
    assert not fitting.parts.bf16 and "stays float32" in caplog.text
