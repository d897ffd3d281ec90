"""What the end-to-end benchmarks share: the project's root, their data made once by a script of tools/, and a vaekit
command run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vaekit(*args: str) -> str:
    """`python -m vaekit ARGS` in a process of its own; its stdout, or the benchmark ends with its stderr."""
    done = subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"vaekit {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def made_by_tool(path: Path, script: str, *args: str) -> Path:
    """`path`, made by `python tools/SCRIPT path ARGS` unless it exists already (a benchmark's own data)."""
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / script), str(path), *args], check=True)
    return path
