"""Short runs of every training path end with the figures they had before the engine was redesigned.

PINNED holds the test figures (results.json) that vaekit at b1cf2f7, the last commit before the
engine redesign, gave for these runs; a later change of any number shows here. The tolerance is
loose enough for the last bits that another CPU gives (AVX2 against AVX-512: ~1e-6 relative after
a few epochs) and tight enough for anything else: a changed draw, order or update moves the
figures by 1e-3 or more. Bit-for-bit equality with the old code is checked beside the suite by
`tools/same_weights.py`, which trains the old and the new code side by side.

`python tests/test_pinned_runs.py --record` prints the figures the installed vaekit gives, in
PINNED's form (run it with the venv of the version whose numbers are to be pinned).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_subprocess
from vaekit.data.digits import read_digits

COMMON = ["--quiet", "--threads", "1", "--device", "cpu", "--epochs", "3"]
SCENARIOS: dict[str, list[str]] = {
    "elbo": ["--data", "digits"],
    "iwae-gated": ["--data", "digits", "--objective", "iwae", "--iwae-samples", "5", "--activation", "gated"],
    "warmup-cosine-L2": ["--data", "digits", "--warmup-epochs", "2", "--lr-schedule", "cosine", "--mc-samples", "2"],
    "table": ["--data", "{table}", "--label-column", "kind"],
    "streamed": ["--data", "{folder}", "--stream", "--workers", "0", "--binarize", "dynamic", "--batch-size", "64"],
    "torchrun-2": ["--data", "digits", "--batch-size", "45", "--free-bits", "0.05", "--binarize", "dynamic"],
    "resume-after-sigkill": ["--data", "digits", "--batch-size", "16", "--checkpoint-every-steps", "3"],
}
FIGURES = ("test_elbo", "test_reconstruction", "test_kl", "test_iwae")
RELATIVE, ABSOLUTE = 1e-4, 1e-4  # nats: see the module's docstring
KILL_AT_STEP = 100  # of 3 x 85 steps at batch 16
PINNED: dict[str, dict[str, float]] = {  # recorded with b1cf2f7 (`--record`)
    "elbo": {
        "test_elbo": -27.07818359375,
        "test_reconstruction": -26.932353515625,
        "test_kl": 0.14583157857259116,
    },
    "iwae-gated": {
        "test_elbo": -27.45742904663086,
        "test_reconstruction": -27.061940104166666,
        "test_kl": 0.3954889424641927,
        "test_iwae": -26.108802083333334,
    },
    "warmup-cosine-L2": {
        "test_elbo": -26.9882373046875,
        "test_reconstruction": -26.4183642578125,
        "test_kl": 0.5698739115397136,
    },
    "table": {
        "test_elbo": -7.20157958984375,
        "test_reconstruction": -6.771129150390625,
        "test_kl": 0.4304500961303711,
    },
    "streamed": {
        "test_elbo": -27.0253466796875,
        "test_reconstruction": -26.8967333984375,
        "test_kl": 0.128609037399292,
    },
    "torchrun-2": {
        "test_elbo": -25.357831217447917,
        "test_reconstruction": -23.019027506510415,
        "test_kl": 2.338804016113281,
    },
    "resume-after-sigkill": {
        "test_elbo": -25.711793619791667,
        "test_reconstruction": -23.693240559895834,
        "test_kl": 2.018551839192708,
    },
}


def write_inputs(folder: Path) -> dict[str, str]:
    """A CSV of 5 numeric columns in their own units beside a text label, and 300 digits as PNGs in 3 classes."""
    rng = np.random.default_rng(20240601)
    latent = rng.standard_normal((600, 2))
    mixing = np.array([[1.0, 0.5, -0.3, 2.0, 0.0], [0.0, 1.5, 0.8, -1.0, 0.7]])
    values = (latent @ mixing + 0.3 * rng.standard_normal((600, 5))) * [1, 10, 0.1, 3, 100] + [0, 50, -1, 5, 1000]
    kinds = np.where(latent[:, 0] > 0, "up", "down")
    rows = [",".join(f"{v:.6f}" for v in row) + f",{kind}" for row, kind in zip(values, kinds)]
    (folder / "table.csv").write_text("a,b,c,d,e,kind\n" + "\n".join(rows) + "\n")
    for index, pixels in enumerate(read_digits().x[:300]):
        (folder / "images" / f"class{index % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[0]).save(folder / "images" / f"class{index % 3}" / f"{index:04d}.png")
    return {"table": str(folder / "table.csv"), "folder": str(folder / "images")}


def train_command(name: str, inputs: dict[str, str], out: Path) -> list[str]:
    flags = [flag.format(**inputs) for flag in SCENARIOS[name]]
    launcher = [sys.executable, "-m", "vaekit"]
    if name == "torchrun-2":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "vaekit"]
    return [*launcher, "train", *flags, *COMMON, "--out", str(out)]


def environment() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def checkpoint_step(run: Path) -> int:
    """The global step of the run's checkpoint, 0 while there is none (read from its JSON header)."""
    try:
        blob = (run / "checkpoint.safetensors").read_bytes()
        header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
        return json.loads(header["__metadata__"]["vaekit_state"])["state"]["progress"]["global_step"]
    except (OSError, ValueError, KeyError):
        return 0


def train_killed_and_resumed(command: list[str], out: Path) -> None:
    """Start the run, SIGKILL it once its checkpoint has passed KILL_AT_STEP, and resume it to the end."""
    process = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while process.poll() is None and checkpoint_step(out) < KILL_AT_STEP:
        time.sleep(0.002)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = run_subprocess("train", "--resume", out, "--quiet", "--threads", "1", env=environment())
    assert resumed.code == 0, resumed.err


def figures(name: str, inputs: dict[str, str], out: Path) -> dict[str, float]:
    command = train_command(name, inputs, out)
    if name == "resume-after-sigkill":
        train_killed_and_resumed(command, out)
    else:
        completed = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    return {key: results[key] for key in FIGURES if key in results}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    return write_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_run_ends_with_its_pinned_figures(name: str, inputs: dict[str, str], tmp_path: Path):
    got = figures(name, inputs, tmp_path / name)
    assert got.keys() == PINNED[name].keys()
    assert got == pytest.approx(PINNED[name], rel=RELATIVE, abs=ABSOLUTE)


if __name__ == "__main__":  # --record
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        made = write_inputs(Path(scratch))
        print(json.dumps({name: figures(name, made, Path(scratch) / name) for name in SCENARIOS}, indent=4))
