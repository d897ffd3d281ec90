"""training/guard.py: the finite check names what became NaN or infinite."""

from __future__ import annotations

import pytest
import torch

from vaekit.training.guard import FiniteCheck, NonFinite


def layers() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))


def test_finite_losses_and_gradients_pass():
    model = layers()
    loss = model(torch.ones(2, 3)).sum()
    loss.backward()
    FiniteCheck(model, list(model.parameters())).check(loss)


def test_a_nan_loss_is_named_first():
    model = layers()
    loss = model(torch.ones(2, 3)).sum() * float("nan")
    loss.backward()
    with pytest.raises(NonFinite, match="^the loss$"):
        FiniteCheck(model, list(model.parameters())).check(loss)


def test_the_first_parameter_with_an_infinite_gradient_is_named():
    model = layers()
    model[1].bias.register_hook(lambda grad: grad * float("inf"))
    loss = model(torch.ones(2, 3)).sum()
    loss.backward()
    with pytest.raises(NonFinite, match=r"^the gradient of 1\.bias$"):
        FiniteCheck(model, list(model.parameters())).check(loss)
