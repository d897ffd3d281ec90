"""vaekit.training.optim.Adam takes torch.optim.Adam's steps bit for bit, and training never imports torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vaekit.training.optim import Adam


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _train(model: torch.nn.Module, optimizer, steps: int = 25) -> None:
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(32, 7, generator=generator)
        loss = model(x).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 10:
            model[0].bias.grad = None  # a parameter without a gradient this step keeps its state
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 * (0.9**step)  # a schedule, changed between steps
        optimizer.step()


@pytest.mark.parametrize("fused", [True, False])
def test_steps_equal_torch_optim_adam_bit_for_bit(fused):
    ours, theirs = _model(), _model()
    _train(ours, Adam(ours.parameters(), lr=1e-2, fused=fused))
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=1e-2, fused=fused, foreach=False if not fused else None))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_state_dict_round_trip_continues_exactly():
    whole, cut = _model(), _model()
    whole_optimizer = Adam(whole.parameters(), lr=1e-2)
    _train(whole, whole_optimizer, steps=30)

    first = Adam(cut.parameters(), lr=1e-2)
    _train(cut, first, steps=15)
    saved = first.state_dict()
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and saved["state"][0]["step"].item() == 15
    second = Adam(cut.parameters(), lr=1e-2)
    second.load_state_dict(saved)
    saved["state"][0]["exp_avg"].add_(1.0)  # the loaded state is a copy
    generator = torch.Generator().manual_seed(1)
    for step in range(30):  # the second half of `_train(..., 30)`: same inputs, same schedule
        x = torch.randn(32, 7, generator=generator)
        if step < 15:
            continue
        loss = cut(x).square().mean()
        second.zero_grad()
        loss.backward()
        second.param_groups[0]["lr"] = 1e-2 * (0.9**step)
        second.step()
    # The reference run dropped bias 0's gradient at step 10 only, which both halves share.
    for a, b in zip(whole.parameters(), cut.parameters()):
        assert torch.equal(a, b)


def test_load_state_dict_refuses_state_that_does_not_fit():
    optimizer = Adam(_model().parameters())
    with pytest.raises(ValueError, match="parameter 9"):
        optimizer.load_state_dict({"state": {9: {}}, "param_groups": []})
    with pytest.raises(ValueError, match="lacks"):
        optimizer.load_state_dict({"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": []})
    with pytest.raises(ValueError, match="exp_avg"):
        optimizer.load_state_dict({"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2),
                                                 "exp_avg_sq": torch.zeros(2)}}, "param_groups": []})


def test_training_never_imports_torch_dynamo(tmp_path):
    """torch.optim imports torch._dynamo and sympy (70 MB, over a second); a vaekit training run must not."""
    script = (
        "import sys, torch\n"
        "from vaekit.api import train\n"
        "from vaekit.config import ModelConfig, RunConfig, TrainConfig\n"
        "train(RunConfig(model=ModelConfig(latent_dim=2, hidden_sizes=(8,)), train=TrainConfig(epochs=1)), "
        "sys.argv[1])\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]


def _one_step(optimizer: Adam, model: torch.nn.Module, **step_arguments) -> None:
    model(torch.ones(4, 7)).square().mean().backward()
    optimizer.step(**step_arguments)
    optimizer.zero_grad()


def test_a_tensor_learning_rate_steps_as_the_float_does():
    """What a step captured in a CUDA graph passes: the rate as a tensor read when the step runs (float64
    here, as the CPU's kernel computes with a double; a GPU's computes with a float)."""
    ours, reference = _model(), _model()
    adam = Adam(ours.parameters(), lr=3e-3, fused=True)
    reference_adam = Adam(reference.parameters(), lr=3e-3, fused=True)
    for _ in range(3):
        _one_step(adam, ours, lr=torch.tensor(3e-3, dtype=torch.float64))
        _one_step(reference_adam, reference)
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), reference.parameters()))


def test_found_inf_skips_the_update_and_its_step_count():
    model = _model()
    adam = Adam(model.parameters(), lr=1e-2, fused=True)
    _one_step(adam, model, found_inf=torch.zeros(()))
    before = [p.detach().clone() for p in model.parameters()]
    moments = [state["exp_avg"].clone() for state in adam.state.values()]
    _one_step(adam, model, found_inf=torch.ones(()))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    assert all(torch.equal(state["exp_avg"], m) for state, m in zip(adam.state.values(), moments))
    assert all(state["step"].item() == 1 for state in adam.state.values())
    _one_step(adam, model, found_inf=torch.zeros(()))
    assert all(state["step"].item() == 2 for state in adam.state.values())
    assert not torch.equal(next(model.parameters()), before[0])


def test_tensor_arguments_need_the_fused_kernel():
    model = _model()
    adam = Adam(model.parameters(), lr=1e-2, fused=False)
    with pytest.raises(ValueError, match="fused"):
        _one_step(adam, model, lr=torch.tensor(1e-2))


def test_init_state_makes_the_state_of_a_fresh_optimizer():
    model = _model()
    adam = Adam(model.parameters(), lr=1e-2, fused=True)
    adam.init_state()
    assert len(adam.state) == len(list(model.parameters()))
    assert all(state["step"].item() == 0 and not state["exp_avg_sq"].any() for state in adam.state.values())
