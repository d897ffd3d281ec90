"""Real training processes, killed and interrupted, then resumed: the result must not show it.

Each test runs `python -m vaekit train` as a subprocess on the digits (saved as a .npy, which
starts faster than the embedded copy) with a tiny model, so that a run takes a few seconds;
start-up (importing torch) is most of each process's time. All processes use one thread:
bit-for-bit equality holds for one machine, torch version and thread count.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaekit.config import RunConfig, TrainConfig
from vaekit.data.digits import read_digits
from vaekit.errors import UserError
from vaekit.runs.checkpoint import load_training_state
from vaekit.runs.directory import STATE_KEY, build_model, read_config
from vaekit.runs.resume import resumed_config
from vaekit.runs.weights import load_weights
from vaekit.training.progress import Progress

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Everything a resume must carry: dynamic binarization (noise), KL warm-up (global step), early
# stopping (patience) and a checkpoint every 2 steps, so kills land mid-epoch.
MODEL = ["--hidden-sizes", "32", "--latent-dim", "4", "--binarize", "dynamic"]
TRAINING = ["--epochs", "5", "--batch-size", "16", "--warmup-epochs", "1", "--patience", "2", "--seed", "3",
            "--checkpoint-every-steps", "2", "--quiet"]
TIMING = ("seconds", "images_per_second", "train_seconds")  # the only fields allowed to differ


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, read_digits().x)  # (1797, 1, 8, 8) uint8
    return path


def start(out: Path, data: Path | None = None) -> subprocess.Popen:
    """A fresh run on `data`, or (without) a resume of `out`."""
    where = ["--resume", str(out)] if data is None else ["--data", str(data), *MODEL, "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-m", "vaekit", "train", *where, *TRAINING],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def wait_until(process: subprocess.Popen, condition: Callable[[], bool], pause: float = 0.002) -> bool:
    """Poll until `condition` holds; False if the process exits first."""
    while process.poll() is None:
        if condition():
            return True
        time.sleep(pause)
    return False


def wait_for_new_checkpoint(process: subprocess.Popen, out: Path) -> bool:
    """Wait until `process` writes a checkpoint (so it is training); False if it exits first."""
    path = out / "checkpoint.safetensors"
    before = path.stat().st_mtime_ns if path.exists() else None
    return wait_until(process, lambda: path.exists() and path.stat().st_mtime_ns != before)


def checkpoint_step(out: Path) -> int:
    """The global step of the checkpoint on disk (its header only), -1 if there is none."""
    try:
        with open(out / "checkpoint.safetensors", "rb") as file:
            header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
    except FileNotFoundError:
        return -1
    return json.loads(header["__metadata__"][STATE_KEY])["state"]["progress"]["global_step"]


def metrics_lines(out: Path) -> int:
    path = out / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def a_write_begins(process: subprocess.Popen, out: Path) -> bool:
    """Wait until a file of the run is being written: its temporary exists, not yet renamed."""
    return wait_until(process, lambda: any(out.glob(".*.tmp")), pause=0.0002)


def tensors(path: Path) -> dict[str, bytes]:
    """The raw bytes of every tensor of a safetensors file, for bit-for-bit comparison."""
    return {key: value.numpy().tobytes() for key, value in load_file(path).items()}


def without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in TIMING}


def metrics(out: Path) -> list[dict]:
    return [without_timing(json.loads(line)) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_loadable(out: Path) -> Progress | None:
    """Every checkpoint on disk loads, with the checks a resume applies, into a fresh model and optimizer."""
    config, data = read_config(out)
    progress = None
    if (out / "checkpoint.safetensors").exists():
        model = build_model(config, data)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate, fused=True)
        saved, generators = load_training_state(out / "checkpoint.safetensors", model, optimizer)
        progress = Progress.from_dict(saved["progress"], out)
        assert set(generators) == {"noise", "torch"}
        lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
        assert len(lines) >= progress.metrics_lines
        [json.loads(line) for line in lines[: progress.metrics_lines]]
    if (out / "model.safetensors").exists():
        load_weights(build_model(config, data), out / "model.safetensors")
    return progress


def assert_same_run(out: Path, reference: Path) -> None:
    for name in ("model.safetensors", "checkpoint.safetensors"):
        assert tensors(out / name) == tensors(reference / name), f"{name} differs from the uninterrupted run"
    assert metrics(out) == metrics(reference)
    results = [without_timing(json.loads((run / "results.json").read_text())) for run in (out, reference)]
    assert results[0] == results[1]
    for picture in ("samples.png", "reconstructions.png", "loss.png"):
        assert (out / picture).is_file()


class Reference:
    """The uninterrupted run every interrupted one must end up equal to; it trains in the background
    while the first test starts its own processes."""

    def __init__(self, out: Path, digits: Path):
        self.out, self.process = out, start(out, digits)

    def wait(self) -> Path:
        if self.process.returncode is None:
            code, err = finish(self.process)
            assert code == 0, err
        return self.out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits: Path) -> Reference:
    return Reference(tmp_path_factory.mktemp("reference") / "run", digits)


def kill_moments(out: Path, rng: random.Random) -> list[tuple[str, Callable[[subprocess.Popen], bool]]]:
    """Five moments spread over the run's 425 steps (85 per epoch), each found by watching the run
    directory: the kill comes before, during or just after a write of one of its files."""
    late, last = rng.randrange(180, 340), rng.randrange(345, 415)

    def before_the_first_checkpoint(process):
        return wait_until(process, lambda: (out / "config.json").exists(), pause=0.0005)

    def during_a_write_after(step):
        return lambda process: (
            wait_for_new_checkpoint(process, out)
            and wait_until(process, lambda: checkpoint_step(out) >= step)
            and a_write_begins(process, out)
        )

    def just_after_a_metrics_line(process):
        lines = metrics_lines(out)
        return wait_for_new_checkpoint(process, out) and wait_until(
            process, lambda: metrics_lines(out) > lines, pause=0.0002
        )

    def at_random_after(step):
        return lambda process: (
            wait_for_new_checkpoint(process, out)
            and wait_until(process, lambda: checkpoint_step(out) >= step)
            and (time.sleep(rng.uniform(0, 0.2)) or True)
        )

    early = rng.randrange(5, 80)
    return [
        ("before the first checkpoint", before_the_first_checkpoint),
        (f"during a write after step {early}", during_a_write_after(early)),
        ("just after an epoch's metrics line", just_after_a_metrics_line),
        (f"at random after step {late}", at_random_after(late)),
        (f"during a write after step {last}", during_a_write_after(last)),
    ]


def test_sigkill_at_random_moments_then_resume_is_bit_exact(tmp_path: Path, digits: Path, reference: Reference):
    out = tmp_path / "run"
    temporaries: set[Path] = set()
    log = []
    process = start(out, digits)
    for moment, wait in kill_moments(out, random.Random(4)):
        if not wait(process):
            pytest.fail(f"training ended before the kill {moment}; make the run longer")
        process.kill()
        process.wait()
        left = set(out.glob(".*.tmp"))  # a new one is the write this kill interrupted
        progress = assert_loadable(out)
        where = ("no checkpoint" if progress is None
                 else f"checkpoint at epoch {progress.epoch + 1} step {progress.step_in_epoch}")
        log.append(f"{moment}: {where}{', a write torn' if left - temporaries else ''}")
        temporaries = left
        process = start(out)
    code, err = finish(process)
    assert code == 0, err
    assert not any(out.glob(".*.tmp")), "resume removes the temporaries of killed writes"
    assert_same_run(out, reference.wait())
    assert len(log) >= 5 and any("torn" in line for line in log), log
    print("\nkilled " + "; ".join(log))


def test_ctrl_c_and_sigterm_write_a_checkpoint_and_say_how_to_resume(
    tmp_path: Path, digits: Path, reference: Reference
):
    out = tmp_path / "run"
    for signal_number, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        process = start(out, digits if signal_number == signal.SIGINT else None)
        assert wait_for_new_checkpoint(process, out), "the run ended before it could be interrupted"
        process.send_signal(signal_number)
        code, err = finish(process)
        assert code == status, err
        assert f"vaekit train --resume {out}" in err
        assert "stopped by" in err and "Traceback" not in err
        progress = assert_loadable(out)
        assert progress is not None and not progress.finished
    code, err = finish(start(out))
    assert code == 0, err
    assert_same_run(out, reference.wait())


# ----- what a resume may change (runs/resume.py) --------------------------------------------------

@pytest.mark.parametrize("saved_batch", [256, 128])  # an older run's 256, or one resolved for a small split
def test_a_resume_with_the_batch_size_unset_keeps_the_runs(tmp_path: Path, saved_batch: int):
    saved = RunConfig(train=TrainConfig(batch_size=saved_batch))
    resumed = resumed_config(saved, RunConfig(train=TrainConfig(epochs=50)), tmp_path)
    assert resumed.train.batch_size == saved_batch and resumed.train.epochs == 50


def test_a_resume_may_not_change_a_batch_size_given(tmp_path: Path):
    with pytest.raises(UserError, match=r"keeps batch_size = 128 \(not 256\)"):
        resumed_config(RunConfig(train=TrainConfig(batch_size=128)), RunConfig(train=TrainConfig(batch_size=256)),
                       tmp_path)
