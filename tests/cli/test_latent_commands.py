"""interpolate, traverse, manifold, latents and sample's new flags: pictures and tables of the latent space,
and one-line errors that write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.runs.trained import TrainedVAE


def picture(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("command", [
    ["interpolate", "--pairs", "3", "--steps", "6"],
    ["interpolate", "--from", "0", "--to", "5", "--path", "slerp"],
    ["traverse"],
    ["traverse", "--index", "2", "--all", "--steps", "7"],
    ["traverse", "--index", "2", "--posterior-scale", "--dims", "0,3"],
    ["manifold", "--grid", "6"],
    ["latents", "--n", "200"],
    ["sample", "--n", "16", "--stochastic", "--temperature", "0.7"],
])
def test_each_command_writes_a_picture(cli, digits_run, tmp_path, command):
    out = tmp_path / "out.png"
    result = cli(command[0], digits_run, *command[1:], "--out", out)
    assert result.code == 0, result.err
    assert picture(out).shape[0] > 50 and picture(out).std() > 0  # a picture with something on it


def test_traversal_rows_differ_and_a_manifold_changes_across(digits_run):
    run = TrainedVAE(digits_run)
    rows = run.traverse(dims=[0, 1], steps=5)
    assert rows.shape == (2, 5, 1, 8, 8)
    grid = run.manifold(4, (0, 1))
    assert grid.shape == (4, 4, 1, 8, 8) and not (grid[0, 0] == grid[-1, -1]).all()


def test_stochastic_samples_are_binary_for_a_bernoulli_run_and_temperature_shrinks_the_spread(digits_run):
    run = TrainedVAE(digits_run)
    drawn = run.sample(32, stochastic=True)
    assert set(np.unique(drawn)) <= {0, 255}
    codes_spread = [run.encode(run.sample(200, temperature=t))[0].std() for t in (0.3, 1.0)]
    assert codes_spread[0] < codes_spread[1]


def test_a_table_run_interpolates_and_traverses_to_csv_in_its_units(cli, table_run, tmp_path):
    assert cli("interpolate", table_run, "--pairs", "2", "--steps", "4", "--out", tmp_path / "i.csv").code == 0
    lines = (tmp_path / "i.csv").read_text().splitlines()
    assert lines[0] == "pair,t,height,weight,noise" and len(lines) == 1 + 2 * 4
    heights = [float(line.split(",")[2]) for line in lines[1:]]
    assert 4 < np.mean(heights) < 16  # the table's units (about 10), not standardized values (about 0)
    assert cli("traverse", table_run, "--out", tmp_path / "t.csv").code == 0
    assert (tmp_path / "t.csv").read_text().startswith("dim,offset,height,weight,noise")
    assert cli("interpolate", table_run, "--out", tmp_path / "i.png").code == 0  # line plots per column


@pytest.mark.parametrize("command, message", [
    (["interpolate", "--from", "0", "--to", "100000"], "--to 100000: the inputs are numbered 0 to"),
    (["interpolate", "--from", "3"], "--from I and --to J go together"),
    (["traverse", "--index", "-1"], "--index -1: the inputs are numbered 0 to"),
    (["traverse", "--dims", "0,99"], "--dims 0,99: this run's latent dimensions are 0 to 19"),
    (["manifold", "--dims", "0,20"], "--dims 0,20: this run's latent dimensions are 0 to 19"),
    (["manifold", "--dims", "1,1"], "pick two different dimensions"),
    (["sample", "--temperature", "0"], "--temperature 0.0: must be above 0"),
    (["sample", "--temperature", "-1"], "--temperature -1.0: must be above 0"),
])
def test_bad_settings_are_one_line_errors_and_write_nothing(cli, digits_run, tmp_path, command, message):
    out = tmp_path / "out.png"
    result = cli(command[0], digits_run, *command[1:], "--out", out)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and message in result.err, result.err
    assert not out.exists()


def test_a_table_run_has_no_manifold_picture(cli, table_run, tmp_path):
    result = cli("manifold", table_run, "--out", tmp_path / "m.png")
    assert result.code == 2 and "which a manifold picture cannot show" in result.err
    assert not (tmp_path / "m.png").exists()


def test_an_image_run_refuses_csv_and_an_existing_file_is_kept(cli, digits_run, tmp_path):
    result = cli("interpolate", digits_run, "--out", tmp_path / "i.csv")
    assert result.code == 2 and "writes .png for this run" in result.err
    (tmp_path / "kept.png").write_bytes(b"mine")
    result = cli("traverse", digits_run, "--out", tmp_path / "kept.png")
    assert result.code == 2 and (tmp_path / "kept.png").read_bytes() == b"mine"


def test_a_scatter_without_labels_says_so(cli, tmp_path):
    from vaekit.cli import main

    np.save(tmp_path / "waves.npy", np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32))
    assert main(["train", "--data", str(tmp_path / "waves.npy"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--batch-size", "64", "--quiet"]) == 0
    result = cli("latents", tmp_path / "run", "--out", tmp_path / "l.png")
    assert result.code == 0 and "no labels: one colour" in result.out
