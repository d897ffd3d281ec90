"""A run directory: settings and weights saved without pickle, loaded back to identical outputs."""

import json

import numpy as np
import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.errors import UserError
from vaekit.model.vae import VAE
from vaekit.runs.directory import load_model, prepare_output_dir, read_config
from vaekit.runs.trained import TrainedVAE
from vaekit.runs.weights import load_weights, save_weights


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_checkpoint_round_trip_reproduces_outputs_bit_for_bit(tmp_path, likelihood):
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=4, hidden_sizes=(16, 8), architecture="mlp")
    original = VAE(config, (1, 6, 6), likelihood)
    save_weights(original, tmp_path / "model.safetensors")
    torch.manual_seed(1)  # a differently initialized twin, so equality is not an accident of seeding
    copy = VAE(config, (1, 6, 6), likelihood)
    load_weights(copy, tmp_path / "model.safetensors")
    x, z = torch.rand(5, 1, 6, 6), torch.randn(5, 4)
    for a, b in zip(original.encode(Batch(x)), copy.encode(Batch(x))):
        assert torch.equal(a, b)
    assert torch.equal(original.decoder(z), copy.decoder(z))
    assert torch.equal(original.observation_model(z).log_prob(x), copy.observation_model(z).log_prob(x))


def test_a_trained_run_loads_and_reproduces_its_outputs(digits_run):
    first, second = TrainedVAE(digits_run), TrainedVAE(digits_run)
    assert np.array_equal(first.sample(8, seed=3), second.sample(8, seed=3))
    x, _ = first.load_inputs()
    assert np.array_equal(first.reconstruct(x[:4]), second.reconstruct(x[:4]))
    config, data = read_config(digits_run)
    assert data.event_shape == (1, 8, 8) and data.likelihood == "bernoulli" and data.kind == "image"
    raw = json.loads((digits_run / "config.json").read_text())
    assert raw["vaekit_version"] and raw["config"]["data"]["source"] == "digits"


def test_api_outputs_are_in_data_units(digits_run):
    run = TrainedVAE(digits_run)
    samples = run.sample(10)
    assert samples.shape == (10, 1, 8, 8) and samples.dtype == np.uint8
    x, labels = run.load_inputs(split="test")
    loc, scale = run.encode(x)
    assert loc.shape == scale.shape == (len(x), run.config.model.latent_dim) and (scale > 0).all()
    assert labels is not None and len(labels) == len(x)
    assert run.decode(loc[:3]).shape == (3, 1, 8, 8)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(UserError, match="not a vaekit run"):
        load_model(tmp_path)
    with pytest.raises(UserError, match="no such run directory"):
        load_model(tmp_path / "missing")


def test_an_existing_run_is_not_overwritten_without_asking(digits_run, tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "config.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a run"):
        prepare_output_dir(target)
    assert (target / "config.json").read_text() == "{}"
    prepare_output_dir(target, overwrite=True)
    assert not (target / "config.json").exists()
