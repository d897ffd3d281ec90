"""runs/files.py: atomic writes give what they write the permissions the umask allows, as `open` would."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from helpers import tiny
from vaekit.api import train
from vaekit.runs.files import atomic_write_bytes, current_umask


@pytest.fixture
def umask(request):
    """Set the process's umask for one test (`request.param`), and restore it."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002], indirect=True)
def test_an_atomic_write_has_the_permissions_open_would_give(tmp_path: Path, umask: int):
    atomic_write_bytes(tmp_path / "config.json", b"{}")
    plain = tmp_path / "plain"
    plain.write_bytes(b"{}")
    assert mode(tmp_path / "config.json") == mode(plain) == 0o666 & ~umask
    assert current_umask() == umask  # reading it leaves it as it was


@pytest.mark.parametrize("umask", [0o022], indirect=True)
def test_a_trained_run_is_readable_by_those_the_umask_lets_read(tmp_path: Path, umask: int):
    out = tmp_path / "run"
    train(tiny(epochs=1), out)
    files = [path for path in out.rglob("*") if path.is_file()]
    assert {"config.json", "model.safetensors", "checkpoint.safetensors", "results.json", "metrics.jsonl",
            "samples.png", "report.html"} <= {path.name for path in files}
    assert {path.name: oct(mode(path)) for path in files} == {path.name: "0o644" for path in files}
