"""--tensorboard: the epoch's figures and pictures in RUN/tensorboard/, the same run with or without it, and one
line that says how to install what is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import assert_same_run, tiny
from vaekit.api import train
from vaekit.training.tensorboard import tag

pytest.importorskip("tensorboard", reason="the dev extras install tensorboard: pip install -e '.[dev]'")


def logged(run: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[int]]]:
    """Scalars {tag: [(epoch, value)]} and images {tag: [epoch]} of a run's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    scalars = {name: [(e.step, e.value) for e in events.Scalars(name)] for name in events.Tags()["scalars"]}
    images = {name: [e.step for e in events.Images(name)] for name in events.Tags()["images"]}
    return scalars, images


def test_the_log_holds_every_epochs_figures_and_pictures_and_training_is_unchanged(tmp_path, one_thread):
    train(tiny(tensorboard=True), tmp_path / "logged")
    train(tiny(), tmp_path / "plain")
    assert_same_run(tmp_path / "logged", tmp_path / "plain")  # its pictures draw from generators of their own
    records = [json.loads(line) for line in (tmp_path / "logged" / "metrics.jsonl").read_text().splitlines()]
    scalars, images = logged(tmp_path / "logged")
    for key in ("train_elbo", "train_reconstruction", "train_kl", "val_elbo", "val_reconstruction", "val_kl",
                "beta", "learning_rate"):
        assert scalars[tag(key)] == [(r["epoch"], pytest.approx(r[key], rel=1e-6, abs=1e-9)) for r in records], key
    assert tag("val_elbo") == "validation/elbo" and tag("beta") == "schedule/beta"
    assert images == {name: [1, 2, 3] for name in ("pictures/samples", "pictures/inputs", "pictures/reconstructions")}
    assert not (tmp_path / "plain" / "tensorboard").exists()


def test_a_resumed_run_may_start_logging(tmp_path, one_thread, cli):
    out = tmp_path / "run"
    train(tiny(epochs=2), out)
    assert cli("train", "--resume", out, "--epochs", "3", "--tensorboard", "--quiet").code == 0
    scalars, _ = logged(out)
    assert [epoch for epoch, _ in scalars["train/elbo"]] == [3]


def test_without_the_package_one_line_says_how_to_install_it(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    result = cli("train", "--data", "digits", "--out", tmp_path / "run", "--epochs", "1", "--tensorboard", "--quiet")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "pip install 'vaekit[tensorboard]'" in result.err and not (tmp_path / "run").exists()
