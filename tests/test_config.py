"""Typed settings: defaults, validation with actionable messages, TOML with typo hints."""

import pytest

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_toml
from vaekit.errors import UserError


def test_defaults_are_the_reference_network_with_the_faster_training_settings():
    config = RunConfig()
    assert config.model.hidden_sizes == (400,) and config.model.latent_dim == 20
    # README, Performance: these reach a given test loss in about half the epochs of pytorch/examples' settings.
    assert config.train.batch_size == 256 and config.train.learning_rate == 3e-3 and config.train.adam_beta2 == 0.99
    assert config.train.weight_average == 0.998 and config.train.output_bias_from_data
    assert config.data.source == "digits"


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ModelConfig(latent_dim=0), "latent_dim = 0"),
        (lambda: TrainConfig(learning_rate=-1), "learning_rate = -1"),
        (lambda: TrainConfig(batch_size=0), "batch_size = 0"),
        (lambda: TrainConfig(adam_beta2=1.0), "adam_beta2 = 1.0"),
        (lambda: TrainConfig(weight_average=-0.5), "weight_average = -0.5"),
        (lambda: TrainConfig(weight_average=float("nan")), "weight_average = nan"),
        (lambda: TrainConfig(epochs=-1), "epochs = -1"),
        (lambda: ModelConfig(likelihood="poisson"), "likelihood = 'poisson'"),
        (lambda: DataConfig(binarize="maybe"), "binarize = 'maybe'"),
        (lambda: DataConfig(validation_fraction=0.6, test_fraction=0.5), "leave some data"),
    ],
)
def test_absurd_settings_are_refused_with_the_setting_named(build, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        build()


def test_toml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nlatent_dim = 40\nhidden_sizes = [300, 300]\n[train]\nepochs = 7\n')
    config = load_toml(path)
    assert config.model.hidden_sizes == (300, 300) and config.model.latent_dim == 40
    overridden = config.with_overrides({"train": {"epochs": 3}, "model": {}, "data": {}})
    assert overridden.train.epochs == 3 and overridden.model.latent_dim == 40
    assert RunConfig.from_dict(overridden.to_dict()) == overridden


def test_a_typo_in_toml_names_the_key_and_the_nearest_valid_one(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nlearning_rat = 0.01\n")
    with pytest.raises(UserError, match=r"unknown key 'learning_rat'; did you mean 'learning_rate'"):
        load_toml(path)
    path.write_text("[trian]\nepochs = 1\n")
    with pytest.raises(UserError, match="did you mean 'train'"):
        load_toml(path)


def test_a_wrongly_typed_toml_value_is_a_user_error(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nlatent_dim = "twenty"\n')
    with pytest.raises(UserError, match="model"):
        load_toml(path)
