"""The trainer's CUDA-graph step on a CPU, with the graph stood in for by re-running the captured step.

A real capture needs a GPU (tests/test_cuda.py); what is checked here is everything around it: the
step written for a graph (β and the step size as tensors, the finite check as a flag that makes Adam
skip its update) takes the eager step's numbers bit for bit, and stops where the eager step stops.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import vaekit.training.loop
from test_training import assert_same_run, tensors, tiny
from vaekit.api import train
from vaekit.api import resolve_likelihood
from vaekit.data import load_data
from vaekit.model.vae import VAE
from vaekit.training.loop import Trainer, TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_thread")


class ReplayedStep:
    """GraphedStep's interface; `replay` runs the step body again on the fixed buffers. The warm-up
    steps run and are undone, as in the real one."""

    captures = 0

    def __init__(self, body, example, generator, state, clear_gradients):
        self.x, self.beta = example.detach().clone(), torch.zeros(())
        self.learning_rate = torch.zeros((), dtype=torch.float64)  # as the CPU's fused Adam takes it
        saved, saved_generator = [t.detach().clone() for t in state], generator.get_state()
        for _ in range(2):
            body(self.x, self.beta, self.learning_rate)
            clear_gradients()
        with torch.no_grad():
            for tensor, value in zip(state, saved):
                tensor.copy_(value)
        generator.set_state(saved_generator)
        self.body, self.clear_gradients = body, clear_gradients
        ReplayedStep.captures += 1

    def replay(self, x, beta, learning_rate):
        self.x.copy_(x)
        self.beta.fill_(beta)
        self.learning_rate.fill_(learning_rate)
        outputs = self.body(self.x, self.beta, self.learning_rate)
        self.clear_gradients()
        return outputs


OTHER_MODELS = [  # what else a graphed step must take as the eager one does
    {"train": {"objective": "iwae"}},
    {"train": {"mc_samples": 2}},
    {"model": {"architecture": "conv", "conv_channels": (8, 16)}},  # launched eagerly on a GPU, for now
    {"model": {"activation": "gated"}},
    {"model": {"likelihood": "gaussian"}},
]


def trainer(tmp_path: Path, graphs: bool, monkeypatch, overrides: dict | None = None, **settings) -> Trainer:
    config = tiny(**settings).with_overrides(overrides or {})
    splits = load_data(config.data)
    torch.manual_seed(0)
    model = VAE(config.model, splits.event_shape, resolve_likelihood(config.model.likelihood, splits))
    monkeypatch.setattr(vaekit.training.loop, "GraphedStep", ReplayedStep)
    result = Trainer(model, splits, config.train, tmp_path / str(graphs), torch.device("cpu"),
                     binarize_dynamically=True, progress_bar=False)
    result.use_graphs = graphs  # on a CPU only through this stand-in
    (tmp_path / str(graphs)).mkdir()
    return result


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_graph_step_takes_the_eager_steps_bit_for_bit(tmp_path: Path, monkeypatch, schedule: str):
    """3 epochs of 21 full batches and a partial one (eager in both), β rising over the first."""
    runs = {graphs: trainer(tmp_path, graphs, monkeypatch, lr_schedule=schedule) for graphs in (True, False)}
    captures = ReplayedStep.captures
    records = {graphs: run.fit() for graphs, run in runs.items()}
    assert ReplayedStep.captures == captures + 1
    assert all(torch.equal(a, b) for a, b in zip(runs[True].parameters, runs[False].parameters))
    assert all(torch.equal(a, b) for a, b in zip(runs[True].average.average, runs[False].average.average))
    assert [r["train_elbo"] for r in records[True]] == [r["train_elbo"] for r in records[False]]


@pytest.mark.parametrize("overrides", OTHER_MODELS, ids=lambda o: next(iter(next(iter(o.values())).items()))[0])
def test_the_graph_step_takes_the_eager_steps_of_other_models(tmp_path: Path, monkeypatch, overrides: dict):
    runs = {graphs: trainer(tmp_path, graphs, monkeypatch, overrides, epochs=1) for graphs in (True, False)}
    for run in runs.values():
        run.fit()
    assert tensors(tmp_path / "True" / "checkpoint.safetensors") == tensors(tmp_path / "False" / "checkpoint.safetensors")


def test_a_non_finite_gradient_stops_the_graph_step_before_the_update(tmp_path: Path, monkeypatch):
    run = trainer(tmp_path, True, monkeypatch, checkpoint_every_steps=None)
    poison = torch.ones(())
    run.model.decoder.out.bias.register_hook(lambda grad: grad * poison)
    steps, beta = itertools.count(1), Trainer.beta

    def beta_poisoning_step_3(self):
        if next(steps) == 3:
            poison.fill_(float("nan"))
        return beta(self)

    monkeypatch.setattr(Trainer, "beta", beta_poisoning_step_3)
    with pytest.raises(TrainingDiverged, match=r"the gradient of decoder\.out\.bias became NaN or infinite at epoch 1, step 3"):
        run.fit()
    assert all(torch.isfinite(p).all() for p in run.parameters), "the NaN step was taken"
    assert all(state["step"].item() == 2 for state in run.optimizer.state.values()), "the skipped step was counted"


def test_an_absurd_learning_rate_stops_the_graph_step_where_it_stops_the_eager_one(tmp_path: Path, monkeypatch):
    stops = []
    for graphs in (True, False):
        with pytest.raises(TrainingDiverged, match="the loss became NaN") as stopped:
            trainer(tmp_path, graphs, monkeypatch, learning_rate=1e6, batch_size=128).fit()
        stops.append(str(stopped.value).split(";")[0])
    assert stops[0] == stops[1]


def test_a_resume_may_switch_cuda_graphs(tmp_path: Path):
    """How a step is launched is not part of the run: switching it on resume is allowed (on a CPU it
    changes nothing; tests/test_cuda.py checks the GPU)."""
    train(tiny(epochs=4), tmp_path / "straight")
    train(tiny(), tmp_path / "run")
    train(tiny(epochs=4, cuda_graphs=False), tmp_path / "run", resume=True)
    assert_same_run(tmp_path / "run", tmp_path / "straight")
