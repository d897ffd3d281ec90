"""A conditional VAE (train --conditional): it generates the class asked for, converts inputs to another class,
evaluates log p(x|y), resumes, and refuses what it cannot do in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.data.digits import read_digits
from vaekit.model.objectives import Elbo
from vaekit.model.vae import VAE
from vaekit.runs.trained import TrainedVAE

TRAIN = ["--data", "digits", "--conditional", "--latent-dim", "2", "--epochs", "15", "--quiet"]


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("runs") / "digits-c"
    assert main(["train", *TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def classifier() -> LogisticRegression:
    """A classifier of the real digits (all 1,797: it only judges what the samples look like)."""
    digits = read_digits()
    return LogisticRegression(max_iter=2000).fit(digits.x.reshape(len(digits.x), -1) / 255.0, digits.y)


def accuracy(classifier: LogisticRegression, images: np.ndarray, labels: np.ndarray) -> float:
    return float((classifier.predict(images.reshape(len(images), -1) / 255.0) == labels).mean())


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_a_conditional_model_decodes_the_label_it_is_given(architecture):
    config = ModelConfig(latent_dim=3, hidden_sizes=(16,), architecture=architecture, conv_channels=(4,))
    model = VAE(config, (1, 8, 8), "bernoulli", classes=4)
    x, labels = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 0])
    z = torch.randn(5, 3)
    assert not torch.equal(model.decode_mean(z, labels), model.decode_mean(z, (labels + 1) % 4))
    objective = Elbo()
    objective.loss(objective.terms(model, Batch(x, labels))).backward()
    assert model.encoder.heads.loc.weight.grad is not None
    with pytest.raises(ValueError, match="needs the labels"):
        model.encode(Batch(x))
    plain = VAE(config, (1, 8, 8), "bernoulli")  # no classes: the same networks as ever
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in model.parameters())


def test_samples_of_a_chosen_class_are_recognized_as_it(conditional_run: Path, classifier, cli, tmp_path):
    trained = TrainedVAE(conditional_run)
    labels = np.repeat(np.arange(10), 20)
    samples = trained.sample(len(labels), seed=1, labels=labels)
    measured = accuracy(classifier, samples, labels)
    assert measured > 0.8, measured  # chance is 0.1; measured 0.99
    result = cli("sample", conditional_run, "--label", "3", "--label", "7", "--n", "4", "--out", tmp_path / "s.npy")
    assert result.code == 0 and np.load(tmp_path / "s.npy").shape == (8, 1, 8, 8)
    drawn = np.load(tmp_path / "s.npy")
    assert accuracy(classifier, drawn, np.repeat([3, 7], 4)) >= 0.75
    assert cli("sample", conditional_run, "--per-label", "3", "--out", tmp_path / "grid.png").code == 0
    assert Image.open(tmp_path / "grid.png").size[0] < Image.open(tmp_path / "grid.png").size[1]  # 3 wide, 10 high


def test_convert_renders_inputs_as_the_target_class(conditional_run: Path, classifier, cli, tmp_path):
    trained = TrainedVAE(conditional_run)
    x, y = trained.load_inputs()
    converted = trained.convert(x, y, np.full(len(x), 7))
    assert accuracy(classifier, converted, np.full(len(x), 7)) > 0.8
    assert cli("convert", conditional_run, "--to-label", "7", "--out", tmp_path / "c.png").code == 0
    assert cli("convert", conditional_run, "--to-label", "all", "--n", "4", "--out", tmp_path / "all.png").code == 0
    result = cli("convert", conditional_run, "--to-label", "all", "--n", "3", "--out", tmp_path / "all.npy")
    assert result.code == 0 and np.load(tmp_path / "all.npy").shape == (30, 1, 8, 8)


def test_the_latent_commands_decode_with_the_label_asked_for(conditional_run: Path, classifier, cli, tmp_path):
    trained = TrainedVAE(conditional_run)
    x, y = trained.load_inputs()
    sevens = trained.manifold(5, (0, 1), label=7).reshape(25, 1, 8, 8)
    assert accuracy(classifier, sevens, np.full(25, 7)) > 0.8
    paths = trained.interpolate(x[:4], x[4:8], steps=3, labels_from=y[:4], labels_to=y[4:8])
    assert accuracy(classifier, paths[:, 0], y[:4]) >= 0.75  # decoded with the start's label
    rows = trained.traverse(dims=[0, 1], steps=3, label=2).reshape(6, 1, 8, 8)
    assert accuracy(classifier, rows, np.full(6, 2)) > 0.8
    for command in (["interpolate", "--pairs", "2", "--label", "5"], ["traverse", "--index", "3"],
                    ["manifold", "--grid", "4", "--label", "1"]):
        assert cli(command[0], conditional_run, *command[1:], "--out", tmp_path / f"{command[0]}.png").code == 0


def test_evaluate_reports_log_p_x_given_y_and_the_report_is_written(conditional_run: Path, cli):
    result = cli("evaluate", conditional_run, "--importance-samples", "20", "--json")
    figures = json.loads(result.out)
    assert result.code == 0 and figures["nll"] > 0 and figures["elbo"] <= -figures["nll"] + 1e-6
    report = (conditional_run / "report.html").read_text()
    assert "Reconstructions" in report and "Interpolations" in report and "Manifold" in report


def test_a_conditional_run_resumes_exactly(tmp_path, cli):
    from helpers import assert_same_run

    short = ["--data", "digits", "--conditional", "--latent-dim", "2", "--quiet", "--batch-size", "128"]
    assert cli("train", *short, "--epochs", "3", "--out", tmp_path / "whole").code == 0
    assert cli("train", *short, "--epochs", "1", "--out", tmp_path / "part").code == 0
    assert cli("train", "--resume", tmp_path / "part", "--epochs", "3").code == 0
    assert_same_run(tmp_path / "part", tmp_path / "whole")


def one_line(result, *said: str) -> None:
    errors = [line for line in result.err.splitlines() if not line.startswith("vaekit: warning:")]
    assert result.code == 2 and len(errors) == 1 and "Traceback" not in result.err, result.err
    for text in said:
        assert text in result.err, result.err


def test_what_a_conditional_run_cannot_do_is_one_line(conditional_run: Path, digits_run: Path, cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b,kind\n" + "".join(f"{i},{i * 2 % 7},same\n" for i in range(40)))
    one_line(cli("train", "--data", table, "--conditional", "--out", tmp_path / "r"),
             "--conditional needs labels")
    one_line(cli("train", "--data", table, "--label-column", "kind", "--conditional", "--out", tmp_path / "r"),
             "every training example has the label same", "two classes or more")
    one_line(cli("sample", conditional_run, "--label", "seven", "--out", tmp_path / "s.png"),
             "--label seven: not a class of", "0, 1, 2")
    one_line(cli("convert", digits_run, "--to-label", "7", "--out", tmp_path / "c.png"),
             "needs a conditional VAE")
    one_line(cli("sample", digits_run, "--per-label", "2", "--out", tmp_path / "c.png"), "need a conditional VAE")
    one_line(cli("manifold", conditional_run, "--label", "ten", "--out", tmp_path / "m.png"), "--label ten")
    one_line(cli("gradient-variance", conditional_run, "--draws", "4", "--out", tmp_path / "g"), "conditional VAE")
    assert not any(tmp_path.glob("*.png")) and not (tmp_path / "r").exists()
    copied = Path(shutil.copytree(conditional_run, tmp_path / "copy"))
    one_line(cli("encode", copied, "--data", tmp_path / "t.csv", "--out", tmp_path / "codes.npz"))


@pytest.mark.parametrize("settings", [["--objective", "iwae", "--iwae-samples", "3"], ["--activation", "gated"],
                                      ["--architecture", "conv", "--conv-channels", "8"],
                                      ["--warmup-epochs", "1", "--free-bits", "0.1", "--beta", "0.5"]],
                         ids=["iwae", "gated", "conv", "warm-up, free bits, beta"])
def test_every_objective_and_network_trains_conditionally(settings, tmp_path, cli):
    result = cli("train", "--data", "digits", "--conditional", "--epochs", "1", "--latent-dim", "2", "--quiet",
                 *settings, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    assert TrainedVAE(tmp_path / "run").sample(4, labels=np.array([0, 1, 2, 3])).shape == (4, 1, 8, 8)


def test_a_table_converts_in_its_own_units_and_columns(tmp_path, cli):
    rng = np.random.default_rng(0)
    groups = ["short", "tall"]
    rows = [f"{170 + 10 * (i % 2) + rng.normal():.2f},{60 + 15 * (i % 2) + rng.normal():.2f},{groups[i % 2]}"
            for i in range(200)]
    (tmp_path / "people.csv").write_text("height,weight,group\n" + "\n".join(rows) + "\n")
    train = ["train", "--data", tmp_path / "people.csv", "--label-column", "group", "--conditional", "--epochs", "20",
             "--latent-dim", "1", "--batch-size", "32", "--quiet", "--out", tmp_path / "run"]
    assert cli(*train).code == 0
    result = cli("convert", tmp_path / "run", "--data", tmp_path / "people.csv", "--label-column", "group",
                 "--to-label", "tall", "--out", tmp_path / "tall.csv")
    assert result.code == 0, result.err
    lines = (tmp_path / "tall.csv").read_text().splitlines()
    assert lines[0] == "height,weight" and len(lines) == 201
    converted = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert abs(converted[:, 0].mean() - 180) < 3 and abs(converted[:, 1].mean() - 75) < 4  # every row made tall
