"""What the end-to-end benchmarks share: the project's root, and a vaekit command run as a user runs it."""

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
