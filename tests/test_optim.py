"""vaekit.optim.Adam takes torch.optim.Adam's steps bit for bit, and training never imports torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vaekit.optim import Adam


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
        "train(RunConfig(model=ModelConfig(latent_dim=2, hidden_sizes=(8,)), train=TrainConfig(epochs=1)), sys.argv[1])\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]
