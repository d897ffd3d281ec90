"""Shared fixtures: running the CLI in-process or as a real subprocess, and a small trained run."""

from __future__ import annotations

import os
from pathlib import Path

# Tests train tiny models, for which one thread is fastest and immune to a busy machine; subprocesses
# inherit it. (Benchmarks, not tests, measure speed.) Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import CliResult  # noqa: E402
from vaekit.cli import main  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def cli(capsys):
    """Run `vaekit ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:  # argparse usage errors and --help
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module, whatever OMP_NUM_THREADS says: equal runs need equal thread
    counts, and tiny models are fastest on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A small run on the embedded digits, trained once per test session (a few seconds)."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--data", "digits", "--out", str(out), "--epochs", "3", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def table_run(tmp_path_factory) -> Path:
    """A small run on a CSV of three columns in their own units (height ~ 10, weight ~ 5, noise ~ 0), two of
    them correlated, trained once per test session (a couple of seconds)."""
    import numpy as np

    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(300, 1))
    rows = np.hstack([10 + 3 * shared, 5 - 2 * shared, rng.normal(size=(300, 1))]) + 0.3 * rng.normal(size=(300, 3))
    lines = ["height,weight,noise"] + [",".join(f"{v:.3f}" for v in row) for row in rows]
    (folder / "people.csv").write_text("\n".join(lines) + "\n")
    out = folder / "run"
    assert main(["train", "--data", str(folder / "people.csv"), "--out", str(out), "--epochs", "3",
                 "--latent-dim", "2", "--batch-size", "32", "--quiet"]) == 0
    return out


CHROMIUM = Path("/usr/bin/chromium")  # Debian's (apt-get install chromium): never a browser Playwright downloads
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def _missing(what: str, fix: str) -> None:
    """Skip where it cannot be installed (not root); fail as root, as in CI, where `.ci/run` installs it."""
    if os.geteuid() != 0:
        pytest.skip(f"{what} is missing and this is not root, so it cannot be installed here: `{fix}`")
    pytest.fail(f"{what} is missing: `{fix}`")


@pytest.fixture(scope="session")
def browser():
    """A headless chromium (Playwright's Browser) for tests of served pages, started once per session."""
    if not CHROMIUM.exists():
        _missing("chromium", "apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright", "pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
