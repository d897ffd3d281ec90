"""averaging.py: the running average of the weights, and what a run does with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from vaekit.api import train
from vaekit.config import RunConfig
from vaekit.runs.checkpoint import AVERAGE_PREFIX, MODEL_PREFIX, load_training_state
from vaekit.runs.directory import build_model, read_config
from vaekit.runs.integrity import CHECKSUM_KEY
from vaekit.runs.weights import read_safetensors
from vaekit.training.averaging import WeightAverage

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("every", [1, 3])
def test_the_average_follows_its_formula_with_the_early_ramp(every: int):
    layer = nn.Linear(3, 2)
    average = WeightAverage(layer, decay=0.9, every=every)
    expected = [p.detach().clone() for p in layer.parameters()]
    for step in range(1, 100):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn_like(p))
        average.update(step)
        if step % every == 0:  # with the decay of `every` steps; 0.18 at the first step, 0.9 from step 80 on
            decay = min(0.9, (1 + step) / (10 + step)) ** every
            expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, layer.parameters())]
    for got, want in zip(average.average, expected):
        torch.testing.assert_close(got, want)


def test_applied_swaps_the_average_in_and_the_weights_back():
    layer = nn.Linear(3, 2)
    average = WeightAverage(layer, decay=0.5)
    weights = [p.detach().clone() for p in layer.parameters()]
    averaged = [torch.full_like(p, 7.0) for p in layer.parameters()]
    average.load_state_dict(dict(zip(average.names, averaged)))
    with average.applied():
        assert all(torch.equal(p, a) for p, a in zip(layer.parameters(), averaged))
        assert all(isinstance(p, nn.Parameter) for p in layer.parameters())
    assert all(torch.equal(p, w) for p, w in zip(layer.parameters(), weights))
    with pytest.raises(RuntimeError), average.applied():
        raise RuntimeError("validation failed")
    assert all(torch.equal(p, w) for p, w in zip(layer.parameters(), weights))  # restored even so


def test_decay_zero_is_off():
    layer = nn.Linear(3, 2)
    average = WeightAverage(layer, decay=0.0)
    average.update(1)
    with average.applied():
        pass
    assert average.state_dict() == {}


def settings(**train) -> RunConfig:
    return RunConfig().with_overrides({"model": {"hidden_sizes": (32,), "latent_dim": 4},
                                       "train": {"epochs": 3, "patience": None, "seed": 1, **train}})


def test_a_run_keeps_and_validates_the_average_and_trains_the_raw_weights(tmp_path: Path):
    run = train(settings(), tmp_path / "run")
    checkpoint, _ = read_safetensors(tmp_path / "run" / "checkpoint.safetensors")
    best, _ = read_safetensors(tmp_path / "run" / "model.safetensors")
    assert run.results["best_epoch"] == 3  # so the best weights are the checkpoint's
    for name, value in best.items():
        if name.startswith("likelihood."):
            continue
        assert torch.equal(value, checkpoint[AVERAGE_PREFIX + name]), name  # the average is what is kept
        assert not torch.equal(value, checkpoint[MODEL_PREFIX + name]), name  # and it is not the raw weights


def test_an_older_checkpoint_without_averages_starts_the_average_at_its_weights(tmp_path: Path):
    train(settings(epochs=1), tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.safetensors"
    saved, metadata = read_safetensors(path)
    metadata.pop(CHECKSUM_KEY)  # an older vaekit wrote no checksum either
    save_file({k: v for k, v in saved.items() if not k.startswith(AVERAGE_PREFIX)}, path, metadata)
    config, data = read_config(tmp_path / "run")
    model = build_model(config, data)
    average = WeightAverage(model, 0.998)
    load_training_state(path, model, torch.optim.Adam(model.parameters()), average)
    for name, value in average.state_dict().items():
        assert torch.equal(value, saved[MODEL_PREFIX + name])


def test_a_run_saved_before_the_newer_settings_resumes_with_what_it_trained_with(tmp_path: Path):
    train(settings(epochs=1), tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    raw = json.loads(path.read_text())
    for key in ("adam_beta2", "weight_average", "output_bias_from_data"):
        del raw["config"]["train"][key]
    path.write_text(json.dumps(raw))
    train_config = read_config(tmp_path / "run")[0].train
    assert (train_config.adam_beta2, train_config.weight_average, train_config.output_bias_from_data) == (
        0.999, 0.0, False)
