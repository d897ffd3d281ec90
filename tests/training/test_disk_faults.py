"""A disk that refuses a write (full, read-only) loses nothing: training stops with one line that names the file,
says what is intact and how to go on, and once the disk is fixed, --resume ends with the same weights as a run
that never met the fault. On a real full tmpfs where this process may mount one (root), by injection elsewhere."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import assert_same_run

MODEL = ["--data", "digits", "--latent-dim", "2", "--batch-size", "64", "--epochs", "3", "--patience", "3", "--quiet"]
SMALL = [*MODEL, "--hidden-sizes", "16"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run as it ends when no write fails."""
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    return out


class FullDisk:
    """os.fsync that fails with ENOSPC on the `nth` write of the file `name` (an atomic write's temporary
    `.NAME.*.tmp`, or NAME itself for an appended log): the file system refusing that one write."""

    def __init__(self, name: str, nth: int):
        self.name, self.nth, self.seen = name, nth, 0
        self.real = os.fsync

    def __call__(self, descriptor: int) -> None:
        target = os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}"))
        if target == self.name or target.startswith(f".{self.name}."):
            self.seen += 1
            if self.seen == self.nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(descriptor)


# (file, which of its writes fails, what the line must say)
FAULTS = [
    ("metrics.jsonl", 2, "its checkpoint (the end of epoch 1) is intact"),
    ("checkpoint.safetensors", 2, "its checkpoint (the end of epoch 1) is intact"),
    ("model.safetensors", 3, "its checkpoint (the end of epoch 3) is intact"),
    ("results.json", 1, "its checkpoint (the end of epoch 3) is intact"),
    ("config.json", 1, "nothing was trained: once the disk has room (or the folder is writable), run the same command"),
    ("report.html", 1, "the run itself is complete and saved: once the disk has room, `vaekit report"),
]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc to name a descriptor's file")
@pytest.mark.parametrize(("name", "nth", "said"), FAULTS, ids=[f"{name}#{nth}" for name, nth, _ in FAULTS])
def test_a_refused_write_is_one_line_and_resume_ends_as_if_it_never_happened(
    name, nth, said, reference, tmp_path, cli, monkeypatch
):
    out = tmp_path / "run"
    fault = FullDisk(name, nth)
    monkeypatch.setattr(os, "fsync", fault)
    result = cli("train", *SMALL, "--out", out)
    monkeypatch.setattr(os, "fsync", fault.real)
    assert fault.seen == nth, f"{name} was written {fault.seen} times"
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert f"{out / name}: cannot be written (no space left on the device: it needs " in result.err
    assert said in result.err
    assert not list(out.glob(".*.tmp")) if out.exists() else True  # no temporary left behind
    if name == "config.json":
        assert not out.exists()  # nothing was written: the same command again is all it takes
        assert cli("train", *SMALL, "--out", out).code == 0
    elif name == "report.html":
        assert cli("report", out).code == 0
    else:
        assert cli("train", "--resume", out).code == 0
    assert_same_run(out, reference)


# ----- a real file system --------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs of our own; skipped where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_tmpfs_stops_training_with_one_line_and_resume_finishes_it_exactly(small_disk, tmp_path, cli):
    """The issue's scenario: 900 KB free. Epoch 1's checkpoint (618 kB) and best weights (148 kB) fit; epoch 2's
    checkpoint does not, since it is written beside the old one, which stays intact."""
    model = [*MODEL, "--hidden-sizes", "270"]
    assert cli("train", *model, "--out", tmp_path / "reference").code == 0
    ballast = small_disk / "ballast"
    ballast.write_bytes(bytes(shutil.disk_usage(small_disk).free - 900_000))
    out = small_disk / "run"
    result = cli("train", *model, "--out", out)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert f"{out}/checkpoint.safetensors: cannot be written (no space left on the device: it needs 618" in result.err
    assert "its checkpoint (the end of epoch 1) is intact" in result.err and f"--resume {out}`" in result.err
    assert not list(out.glob(".*.tmp"))
    ballast.unlink()  # space freed
    assert cli("train", "--resume", out).code == 0
    assert_same_run(out, tmp_path / "reference")


def test_a_read_only_run_is_one_line_and_resumes_once_writable(small_disk, reference, cli):
    out = small_disk / "run"
    assert cli("train", *SMALL, "--epochs", "1", "--out", out).code == 0
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = cli("train", "--resume", out, "--epochs", "3")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert "the file system is read-only" in result.err or "Read-only file system" in result.err
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert cli("train", "--resume", out, "--epochs", "3").code == 0
    assert_same_run(out, reference)  # one epoch, refused, then two more: as three in one go
