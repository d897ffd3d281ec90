"""api.py: vaekit.train resolves an unset batch size once the data is known, says so, and records it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import vaekit
from vaekit.config import ModelConfig, RunConfig, TrainConfig
from vaekit.runs.directory import read_config

TINY = ["--epochs", "1", "--hidden-sizes", "16", "--latent-dim", "2", "--quiet"]
SMALL_MODEL = ModelConfig(hidden_sizes=(16,), latent_dim=2)
# 200 examples: 33 for the test split and 17 for validation leave 150 for training, fewer than a batch of 256
SMALL_TRAINING = 150


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A .npy of 200 8x8 grey images."""
    path = tmp_path_factory.mktemp("small") / "small.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (200, 1, 8, 8), dtype=np.uint8))
    return path


def test_small_data_trains_in_the_largest_power_of_two_batch_it_holds_and_says_so(cli, small: Path, tmp_path: Path):
    out = tmp_path / "run"
    result = cli("train", "--data", small, "--out", out, *TINY)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("vaekit: warning:")]
    assert len(warnings) == 1, result.err
    assert (f"{SMALL_TRAINING} training examples are fewer than the default batch of 256; training in batches "
            "of 128") in warnings[0]
    assert read_config(out)[0].train.batch_size == 128  # what a resume and `info` read
    assert "batch 128," in cli("info", out).out


def test_a_batch_size_given_larger_than_the_data_stays_an_error(cli, small: Path, tmp_path: Path):
    result = cli("train", "--data", small, "--out", tmp_path / "run", "--batch-size", "256", *TINY)
    assert result.code == 2
    assert f"{SMALL_TRAINING} training examples are fewer than one batch of 256" in result.err


def test_a_resume_with_the_batch_size_unset_keeps_the_one_the_run_resolved(small: Path, tmp_path: Path, caplog):
    out, images = tmp_path / "run", np.load(small)
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        vaekit.train(RunConfig(model=SMALL_MODEL, train=TrainConfig(epochs=1)), out, data=images)
    assert sum("training in batches of 128" in record.getMessage() for record in caplog.records) == 1
    vaekit.train(RunConfig(train=TrainConfig(epochs=2)), out, data=images, resume=True)
    assert read_config(out)[0].train.batch_size == 128
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in metrics] == [2, 4]  # ceil(150 / 128) steps an epoch


def test_data_of_a_batch_or_more_trains_in_batches_of_256_as_before(digits_run: Path):
    assert read_config(digits_run)[0].train.batch_size == 256
