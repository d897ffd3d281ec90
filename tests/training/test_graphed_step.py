"""training/graphed_step.py and cuda_graph.py on a CPU, the graph stood in for by running its work again.

A real capture needs a GPU (tests/test_cuda.py); what is checked here is everything around it: the
step written for a graph (β and the step size as tensors, the finite check as a flag that makes Adam
skip its update) takes the eager step's numbers bit for bit, and stops where the eager step stops.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import OTHER_MODELS, RerunGraph, assert_same_run, tensors, tiny
from vaekit.api import train
from vaekit.data import load_data
from vaekit.data.source import resolve_likelihood
from vaekit.model.vae import VAE
from vaekit.training.graphed_step import GraphedStep
from vaekit.training.guard import TrainingDiverged
from vaekit.training.loop import Hooks, Trainer
from vaekit.training.progress import Progress

pytestmark = pytest.mark.usefixtures("one_thread")


def trainer(tmp_path: Path, graphs: bool, overrides: dict | None = None, hooks: Hooks = Hooks(),
            **settings) -> Trainer:
    """A trainer whose steps replay a captured graph (stood in for by `RerunGraph`), or eager ones (autograd's, which
    the graph captures, not the CPU's explicit step)."""
    config = tiny(step="autograd", **settings).with_overrides(overrides or {})
    splits = load_data(config.data)
    torch.manual_seed(0)
    classes = len(splits.raw.class_names or ()) if config.model.conditional else 0
    model = VAE(config.model, splits.event_shape, resolve_likelihood(config.model.likelihood, splits), classes)
    result = Trainer(model, splits, config.train, tmp_path / str(graphs), torch.device("cpu"),
                     binarize_dynamically=True, progress_bar=False,
                     hooks=replace(hooks, new_graph=RerunGraph if graphs else None))
    assert isinstance(result.step, GraphedStep) == graphs
    (tmp_path / str(graphs)).mkdir()
    return result


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_graph_step_takes_the_eager_steps_bit_for_bit(tmp_path: Path, monkeypatch, schedule: str):
    """3 epochs of 21 full batches and a partial one (eager in both), β rising over the first."""
    runs = {graphs: trainer(tmp_path, graphs, lr_schedule=schedule) for graphs in (True, False)}
    captures = RerunGraph.captures
    records = {graphs: run.fit() for graphs, run in runs.items()}
    assert RerunGraph.captures == captures + 1
    parts = {graphs: run.parts for graphs, run in runs.items()}
    assert all(torch.equal(a, b) for a, b in zip(parts[True].guard.parameters, parts[False].guard.parameters))
    assert all(torch.equal(a, b) for a, b in zip(parts[True].average.average, parts[False].average.average))
    assert [r["train_elbo"] for r in records[True]] == [r["train_elbo"] for r in records[False]]


@pytest.mark.parametrize("overrides", OTHER_MODELS, ids=lambda o: next(iter(next(iter(o.values())).items()))[0])
def test_the_graph_step_takes_the_eager_steps_of_other_models(tmp_path: Path, overrides: dict):
    runs = {graphs: trainer(tmp_path, graphs, overrides, epochs=1) for graphs in (True, False)}
    for run in runs.values():
        run.fit()
    assert tensors(tmp_path / "True" / "checkpoint.safetensors") == tensors(
        tmp_path / "False" / "checkpoint.safetensors"
    )


def test_a_non_finite_gradient_stops_the_graph_step_before_the_update(tmp_path: Path):
    poison = torch.ones(())

    def poisoning_step_3(progress: Progress) -> None:
        if progress.global_step == 2:
            poison.fill_(float("nan"))  # read by the graph at the next replay

    run = trainer(tmp_path, True, hooks=Hooks(after_step=poisoning_step_3), checkpoint_every_steps=None)
    run.model.decoder.out.bias.register_hook(lambda grad: grad * poison)
    with pytest.raises(
        TrainingDiverged, match=r"the gradient of decoder\.out\.bias became NaN or infinite at epoch 1, step 3"
    ):
        run.fit()
    assert all(torch.isfinite(p).all() for p in run.parts.guard.parameters), "the NaN step was taken"
    assert all(
        state["step"].item() == 2 for state in run.parts.optimizer.state.values()
    ), "the skipped step was counted"


def test_an_absurd_learning_rate_stops_the_graph_step_where_it_stops_the_eager_one(tmp_path: Path):
    stops = []
    for graphs in (True, False):
        with pytest.raises(TrainingDiverged, match="the loss became NaN") as stopped:
            trainer(tmp_path, graphs, learning_rate=1e6, batch_size=128).fit()
        stops.append(str(stopped.value).split(";")[0])
    assert stops[0] == stops[1]


def test_a_resume_may_switch_cuda_graphs(tmp_path: Path):
    """How a step is launched is not part of the run: switching it on resume is allowed (on a CPU it
    changes nothing; tests/test_cuda.py checks the GPU)."""
    train(tiny(epochs=4), tmp_path / "straight")
    train(tiny(), tmp_path / "run")
    train(tiny(epochs=4, cuda_graphs=False), tmp_path / "run", resume=True)
    assert_same_run(tmp_path / "run", tmp_path / "straight")
