"""vaekit train --resume: what it refuses, naming the flags, and a budget already spent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def files_of(run: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run.iterdir()) if path.is_file()}


@pytest.fixture
def run_copy(digits_run, tmp_path) -> Path:
    """digits_run (3 epochs) to resume without touching the session's own."""
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


@pytest.mark.parametrize(("epochs", "than"), [(2, "more than"), (3, "all of")])
def test_resuming_a_run_past_its_epochs_is_a_note_and_changes_nothing(cli, run_copy, epochs, than):
    before = files_of(run_copy)
    result = cli("train", "--resume", run_copy, "--epochs", epochs, "--quiet")
    assert result.code == 0 and not result.out
    assert result.err == (f"vaekit train: {run_copy} has trained 3 epochs, {than} --epochs {epochs}: nothing to do; "
                          "pass a larger --epochs to go on\n")
    assert files_of(run_copy) == before


def test_a_refused_change_on_resume_names_the_flags(cli, run_copy):
    before = files_of(run_copy)
    result = cli("train", "--resume", run_copy, "--latent-dim", "4", "--seed", "1", "--epochs", "5")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "cannot change --latent-dim, --seed;" in result.err
    assert "only --epochs, --learning-rate, --patience" in result.err
    assert files_of(run_copy) == before


def test_a_flag_equal_to_the_runs_own_setting_is_no_change(cli, run_copy):
    result = cli("train", "--resume", run_copy, "--latent-dim", "20", "--data", "digits", "--epochs", "3")
    assert result.code == 0 and "nothing to do" in result.err
