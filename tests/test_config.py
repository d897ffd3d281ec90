"""Typed settings: defaults, validation with actionable messages, TOML with typo hints."""

import pytest

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig, batch_size_for, load_toml
from vaekit.errors import UserError


def test_defaults_are_the_reference_network_with_the_faster_training_settings():
    config = RunConfig()
    assert config.model.hidden_sizes == (400,) and config.model.latent_dim == 20
    # docs/performance.md: these reach a given test loss in about half the epochs of pytorch/examples' settings.
    assert batch_size_for(config.train, 60_000) == 256
    assert config.train.learning_rate == 3e-3 and config.train.adam_beta2 == 0.99
    assert config.train.weight_average == 0.998 and config.train.output_bias_from_data
    assert config.data.source == "digits"


@pytest.mark.parametrize(
    "given, train_examples, expected",
    [(None, 1347, 256), (None, 256, 256), (None, 255, 128), (None, 150, 128), (None, 1, 1), (512, 150, 512),
     (64, 1347, 64)],
)
def test_an_unset_batch_size_is_256_or_the_largest_power_of_two_a_smaller_split_holds(given, train_examples,
                                                                                    expected):
    assert TrainConfig().batch_size is None
    assert batch_size_for(TrainConfig(batch_size=given), train_examples) == expected


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


@pytest.mark.parametrize("section, line, message", [
    ("train", 'epochs = "ten"', "epochs = 'ten' must be an integer"),
    ("model", "hidden_sizes = 5", "hidden_sizes = 5 must be a list of integers"),
    ("model", 'hidden_sizes = [400, "x"]', "hidden_sizes = [400, 'x'] must be a list of integers"),
    ("train", "learning_rate = true", "learning_rate = True must be a number"),
    ("train", "cuda_graphs = 1", "cuda_graphs = 1 must be true or false"),
    ("train", "patience = 2.5", "patience = 2.5 must be an integer"),
    ("data", "image_size = [32]", "image_size = [32] must be a list of 2 integers"),
    ("data", 'columns = "a,b"', "columns = 'a,b' must be a list of strings"),
    ("train", "device = 0", "device = 0 must be a string"),
])
def test_a_value_of_the_wrong_type_names_the_key_the_type_and_the_value(tmp_path, section, line, message):
    path = tmp_path / "run.toml"
    path.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(UserError) as raised:
        load_toml(path)
    assert str(raised.value) == f"{path}: [{section}]: {message}"


def test_values_of_the_right_type_still_load(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[data]\nimage_size = [16, 24]\n[model]\nhidden_sizes = []\n[train]\nlearning_rate = 1\n")
    config = load_toml(path)
    assert config.data.image_size == (16, 24) and config.model.hidden_sizes == () and config.train.learning_rate == 1
