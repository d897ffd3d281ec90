"""One writer per run: a second training process on a run is refused with the first one's PID, readers
still work, and a killed holder leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_subprocess
from vaekit.errors import UserError
from vaekit.runs.lock import LOCK_FILE, run_lock

TINY = ["--data", "digits", "--hidden-sizes", "16", "--latent-dim", "2", "--batch-size", "64", "--quiet"]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path, cli):
    run = tmp_path / "run"
    with run_lock(run):
        result = cli("train", *TINY, "--epochs", "1", "--out", run)
        again = cli("train", "--resume", run)
        with pytest.raises(UserError, match=f"process {os.getpid()} .* is training this run"), run_lock(run):
            pass
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # the refused runs wrote nothing
    assert not run.exists()  # the holder made the folder and left nothing in it: it is gone again
    assert result.code == 2 and again.code == 2
    assert f"process {os.getpid()} (since " in result.err and "is training this run" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert cli("train", *TINY, "--epochs", "1", "--out", run).code == 0  # released at the end of the block


def test_a_run_refused_before_writing_leaves_no_folder_behind(tmp_path: Path, cli):
    result = cli("train", "--data", tmp_path / "missing.csv", "--out", tmp_path / "new" / "run")
    assert result.code == 2 and not (tmp_path / "new" / "run").exists()


def test_the_lock_is_released_by_the_kernel_when_its_holder_is_killed(tmp_path: Path):
    """Two real processes: the second is refused while the first trains, `sample` reads the run meanwhile,
    and after a SIGKILL of the first the run resumes at once."""
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "vaekit", "train", *TINY, "--epochs", "400", "--patience", "400",
                              "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "model.safetensors").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr and first.stderr.read()
            time.sleep(0.1)
        second = run_subprocess("train", "--resume", run, timeout=120)
        assert second.code == 2, second.err
        assert f"process {first.pid} (since " in second.err and "is training this run" in second.err
        assert "Traceback" not in second.err
        sampled = run_subprocess("sample", run, "--n", "4", "--out", tmp_path / "grid.png", timeout=120)
        assert sampled.code == 0, sampled.err  # a reader needs no lock
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    resumed = run_subprocess("train", "--resume", run, "--epochs", "3", timeout=120)
    assert resumed.code == 0, resumed.err  # no stale lock after the kill
