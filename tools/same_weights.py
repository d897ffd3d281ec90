"""Prove that two versions of vaekit train to the same numbers, bit for bit.

A refactor of the training engine should change no number. This script trains a fixed set of
short runs (scenarios) with one interpreter -- one virtual environment, hence one version of
vaekit -- and writes a summary of everything numeric the runs leave behind: the SHA-256 of every
tensor of model.safetensors and checkpoint.safetensors, the checkpoint's progress and training
state, results.json and metrics.jsonl. Timing fields are left out (they legitimately differ from
run to run), and so are the Python and NumPy global generator states the checkpoint carries
(vaekit never draws from them; each interpreter seeds them from the OS at start-up). Training the
scenarios once with the old code and once with the new code and comparing the two summaries
shows, scenario by scenario, whether anything moved.

It also proves that an interrupted run resumes exactly: the scenario resume-sigkill is killed with
SIGKILL part-way through training, resumed with `vaekit train --resume`, and must end with exactly
the weights, state and figures of resume-straight, the same run left alone. (The pair trains at
--batch-size 8, about 700 steps in under 2 s, so that there is a mid-run moment to kill.)

Usage (each venv's python runs the script and the training):

    OLD=/work/base/.venv/bin/python NEW=.venv/bin/python
    $OLD tools/same_weights.py --python $OLD --out /tmp/bitcheck/base
    $NEW tools/same_weights.py --python $NEW --out /tmp/bitcheck/new
    # a vaekit with the explicit CPU step (vaekit.training.explicit_step) against one from before it:
    $NEW tools/same_weights.py --python $NEW --out /tmp/bitcheck/new --train-flag=--step=autograd
    python tools/same_weights.py compare /tmp/bitcheck/base/summary.json /tmp/bitcheck/new/summary.json

`compare` prints SAME or DIFFERENT per scenario, naming the tensors and fields that differ, checks
within each summary that resume-sigkill equals resume-straight, and exits 1 if anything differs or
a scenario failed. `--only NAME,NAME` trains a subset; `--list` prints the scenarios.

Everything runs on the CPU with one thread per process (OMP_NUM_THREADS=1, --threads 1), so the
results do not depend on the machine's core count or load. The inputs that are not embedded in
vaekit (a CSV table, a folder of PNGs) are written by this script from a fixed seed, and their
hashes go into the summary so that `compare` can tell a changed input from a changed trainer.

Only the standard library, numpy and safetensors are used, so either venv can run it. All ten
scenarios take about 35 s on 2 cores. Not covered: GPUs (CUDA graphs, bf16), which need a
machine with one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

# Fields that measure time, not training; they are dropped before hashing or comparing.
TIMING_FIELDS = frozenset({"seconds", "images_per_second", "epoch_seconds", "train_seconds"})
# Parts of the checkpoint's state left out as well: Python's and NumPy's global generator states,
# which vaekit saves for a resume but never draws from; each interpreter seeds them from the OS.
UNSEEDED_STATE = frozenset({"global_random"})
# Flags every `vaekit train` gets: the CPU, one thread, no progress bar.
COMMON = ["--quiet", "--threads", "1", "--device", "cpu"]
# The resumed pair: small batches make the run long enough (about 700 steps) to kill mid-way.
RESUME_FLAGS = ["--data", "digits", "--epochs", "4", "--batch-size", "8", "--checkpoint-every-steps", "3"]
KILL_AT_STEP = 250  # SIGKILL once the checkpoint reaches this step (epoch 2 of 4 at batch size 8)...
KILL_DELAY = (0.0, 0.01)  # ...and a random 0-10 ms later (a few steps), to land anywhere in a step
STDERR_TAIL = 3000  # characters of a failed command's stderr kept in the summary
SCENARIO_TIMEOUT = 600  # seconds


@dataclass(frozen=True)
class Scenario:
    name: str
    flags: list[str]  # `vaekit train` flags other than --out and COMMON; {table}/{images} are inputs
    kind: str = "plain"  # plain | torchrun | sigkill
    note: str = ""


SCENARIOS = [
    Scenario("elbo", ["--data", "digits", "--epochs", "3"]),
    Scenario("iwae-gated", ["--data", "digits", "--epochs", "3",
                            "--objective", "iwae", "--iwae-samples", "5", "--activation", "gated"]),
    Scenario("warmup-cosine-L2", ["--data", "digits", "--epochs", "3",
                                  "--warmup-epochs", "2", "--lr-schedule", "cosine", "--mc-samples", "2"]),
    Scenario("table", ["--data", "{table}", "--label-column", "kind", "--epochs", "3"],
             note="a CSV written by this script; Gaussian likelihood (the default for tables)"),
    Scenario("conv-dynamic", ["--data", "digits", "--epochs", "2",
                              "--architecture", "conv", "--binarize", "dynamic", "--free-bits", "0.1"]),
    Scenario("streamed", ["--data", "{images}", "--stream", "--workers", "0", "--epochs", "3"],
             note="a PNG folder written by this script, decoded batch by batch in the trainer"),
    Scenario("streamed-workers", ["--data", "{images}", "--stream", "--workers", "2", "--epochs", "3"],
             note="the same folder decoded by 2 loader processes"),
    Scenario("torchrun2", ["--data", "digits", "--epochs", "2"], kind="torchrun",
             note="2 CPU processes under torch.distributed.run (gloo)"),
    Scenario("resume-straight", RESUME_FLAGS, note="the uninterrupted twin of resume-sigkill"),
    Scenario("resume-sigkill", RESUME_FLAGS, kind="sigkill",
             note=f"SIGKILLed 0-10 ms after its checkpoint reaches step {KILL_AT_STEP}, then --resume to the end"),
]
RESUME_PAIR = ("resume-sigkill", "resume-straight")


# ---------------------------------------------------------------------------------------------
# Inputs written by the script


def write_table(path: Path, rows: int = 600) -> None:
    """A CSV of 5 correlated numeric columns in different units and a text label column `kind`."""
    rng = np.random.default_rng(20240601)
    latent = rng.standard_normal((rows, 2))
    mixing = np.array([[1.0, 0.5, -0.3, 2.0, 0.0], [0.0, 1.5, 0.8, -1.0, 0.7]])
    values = latent @ mixing + 0.3 * rng.standard_normal((rows, 5))
    values = values * np.array([1.0, 10.0, 0.1, 3.0, 100.0]) + np.array([0.0, 50.0, -1.0, 5.0, 1000.0])
    kinds = np.where(latent[:, 0] > 0, "up", "down")
    lines = ["a,b,c,d,e,kind"]
    lines += [",".join(f"{v:.6f}" for v in row) + f",{kind}" for row, kind in zip(values, kinds)]
    path.write_text("\n".join(lines) + "\n")


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a (H, W) uint8 array, encoded with the standard library only."""
    height, width = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + row.tobytes() for row in pixels.astype(np.uint8))  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, grey, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_images(folder: Path, per_class: int = 200, size: int = 8) -> None:
    """Noisy 8x8 bars in 2 class sub-folders: horizontal/ and vertical/."""
    rng = np.random.default_rng(20240602)
    for label, axis in (("horizontal", 0), ("vertical", 1)):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size))
            bars = rng.choice(size, size=rng.integers(1, 4), replace=False)
            if axis == 0:
                image[bars, :] += 180
            else:
                image[:, bars] += 180
            (folder / label / f"{i:04d}.png").write_bytes(png_bytes(np.clip(image, 0, 255)))


def tree_sha256(path: Path) -> str:
    """One hash of a file, or of every file under a folder (relative names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path.parent if path.is_file() else path)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading a run directory


def tensor_hashes(path: Path) -> dict[str, str]:
    """SHA-256 of each tensor: its name, dtype, shape and bytes."""
    hashes = {}
    for name, array in sorted(load_file(str(path)).items()):
        digest = hashlib.sha256()
        digest.update(name.encode() + b"\0" + str(array.dtype).encode() + b"\0")
        digest.update(repr(tuple(array.shape)).encode() + b"\0")
        digest.update(np.ascontiguousarray(array).tobytes())
        hashes[name] = digest.hexdigest()
    return hashes


def header_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors header (read directly; safetensors.numpy hides them)."""
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        return json.loads(file.read(length)).get("__metadata__") or {}


def without_timing(value):
    """The value with every timing field removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def json_sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def checkpoint_state(path: Path) -> tuple[dict, dict[str, str]]:
    """The checkpoint's progress (timing dropped) and a hash of every other part of its state.

    The other parts (the optimizer's scalars, the noise device and the like) must match exactly,
    so only their hashes are kept; UNSEEDED_STATE is left out.
    """
    metadata = header_metadata(path)
    state = json.loads(metadata.get("vaekit_state", "{}"))
    inner = state.get("state", {})
    progress = without_timing(inner.get("progress", {}))
    hashes = {f"state.{k}": json_sha256(without_timing(v)) for k, v in sorted(inner.items())
              if k != "progress" and k not in UNSEEDED_STATE}
    hashes.update({k: json_sha256(without_timing(v)) for k, v in sorted(state.items()) if k != "state"})
    # The checksum (vaekit.runs.integrity) covers the header's timing fields too, so it differs from run to run
    # (and is absent before checksums existed): the tensors and state it protects are compared themselves.
    hashes.update({f"metadata.{k}": json_sha256(v) for k, v in sorted(metadata.items())
                   if k not in ("vaekit_state", "vaekit_sha256")})
    return progress, hashes


def run_record(run: Path) -> dict:
    """Everything numeric a finished run left in its directory, timing removed."""
    progress, state = checkpoint_state(run / "checkpoint.safetensors")
    results = json.loads((run / "results.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "model": tensor_hashes(run / "model.safetensors"),
        "checkpoint": tensor_hashes(run / "checkpoint.safetensors"),
        "progress": progress,
        "state": state,
        "results": without_timing(results),
        "metrics": without_timing(metrics),
    }


def checkpoint_step(path: Path) -> tuple[int, bool] | None:
    """(global_step, finished) of a checkpoint, or None while there is none (or it cannot be read)."""
    try:
        progress = json.loads(header_metadata(path)["vaekit_state"])["state"]["progress"]
        return int(progress["global_step"]), bool(progress.get("finished"))
    except (OSError, KeyError, ValueError, struct.error):
        return None


# ---------------------------------------------------------------------------------------------
# Running the scenarios


class ScenarioFailed(Exception):
    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr[-STDERR_TAIL:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def show(command: list[str]) -> None:
    print("  $ " + shlex.join(command), flush=True)


def run_command(command: list[str]) -> None:
    show(command)
    try:
        done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        raise ScenarioFailed(f"timed out after {SCENARIO_TIMEOUT} s", str(error.stderr or "")) from None
    if done.returncode != 0:
        raise ScenarioFailed(f"exit status {done.returncode}", done.stderr)


def run_killed(command: list[str], run: Path) -> dict:
    """Start the training, SIGKILL it soon after its checkpoint reaches KILL_AT_STEP; say where."""
    show(command)
    checkpoint = run / "checkpoint.safetensors"
    process = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    seen = None
    deadline = time.monotonic() + SCENARIO_TIMEOUT
    try:
        while process.poll() is None and time.monotonic() < deadline:
            seen = checkpoint_step(checkpoint)
            if seen is not None and seen[0] >= KILL_AT_STEP:
                delay = random.uniform(*KILL_DELAY)  # unseeded on purpose: each try kills elsewhere
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        else:
            if process.poll() is None:
                process.kill()
                raise ScenarioFailed("timed out before the checkpoint reached the kill step")
            _, stderr = process.communicate()
            raise ScenarioFailed(
                f"finished (exit status {process.returncode}) before its checkpoint reached step {KILL_AT_STEP}; "
                "nothing was interrupted", stderr)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    stderr = process.stderr.read() if process.stderr else ""
    if process.returncode != -signal.SIGKILL:
        raise ScenarioFailed(f"exit status {process.returncode} instead of death by SIGKILL", stderr)
    left = checkpoint_step(checkpoint)
    if left is None or left[1]:
        raise ScenarioFailed(f"after the kill the checkpoint is {'finished' if left else 'unreadable'}; "
                             "nothing is left to resume", stderr)
    print(f"  killed {delay * 1000:.1f} ms after its checkpoint showed step {seen[0]}; "
          f"resuming from step {left[0]}", flush=True)
    return {"kill_seen_step": seen[0], "kill_delay_ms": round(delay * 1000, 1), "resume_from_step": left[0]}


EXTRA_FLAGS: list[str] = []  # --train-flag: given to every scenario's `vaekit train` (a resume keeps the run's config)


def train_command(python: str, scenario: Scenario, run: Path, inputs: dict[str, Path]) -> list[str]:
    flags = [flag.format(**{k: str(v) for k, v in inputs.items()}) for flag in scenario.flags]
    train = ["-m", "vaekit", "train", *flags, *EXTRA_FLAGS, "--out", str(run), *COMMON]
    if scenario.kind == "torchrun":
        launcher = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                    "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
        return [python, *launcher, *train]
    return [python, *train]


def run_scenario(python: str, scenario: Scenario, out: Path, inputs: dict[str, Path]) -> dict:
    run = out / scenario.name
    if run.exists():
        shutil.rmtree(run)
    command = train_command(python, scenario, run, inputs)
    record: dict = {"kind": scenario.kind, "note": scenario.note, "commands": [shlex.join(command)]}
    start = time.monotonic()
    try:
        if scenario.kind == "sigkill":
            record["kill"] = run_killed(command, run)
            resume = [python, "-m", "vaekit", "train", "--resume", str(run), *COMMON]
            record["commands"].append(shlex.join(resume))
            run_command(resume)
        else:
            run_command(command)
        record.update(run_record(run))
        record["status"] = "ok"
    except ScenarioFailed as error:
        record.update(status="failed", error=str(error), stderr_tail=error.stderr)
        print(f"  SKIPPED {scenario.name}: {error}", flush=True)
        if error.stderr:
            print("  " + "\n  ".join(error.stderr.strip().splitlines()[-15:]), flush=True)
    except (OSError, ValueError, KeyError) as error:  # the run directory is missing or torn
        record.update(status="failed", error=f"reading the run directory: {error!r}", stderr_tail="")
        print(f"  SKIPPED {scenario.name}: reading the run directory: {error!r}", flush=True)
    record["wall_seconds"] = round(time.monotonic() - start, 2)
    return record


def interpreter_facts(python: str) -> dict:
    probe = ("import json, sys, numpy, torch, vaekit; print(json.dumps({'python': sys.version.split()[0], "
             "'torch': torch.__version__, 'numpy': numpy.__version__, 'vaekit_file': vaekit.__file__}))")
    done = subprocess.run([python, "-c", probe], env=environment(), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{python} cannot import vaekit, torch and numpy:\n{done.stderr}")
    return json.loads(done.stdout)


def run_all(python: str, out: Path, names: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    facts = interpreter_facts(python)
    print(f"interpreter {python}: vaekit from {facts['vaekit_file']}, torch {facts['torch']}", flush=True)
    inputs = {"table": out / "inputs" / "table.csv", "images": out / "inputs" / "images"}
    if (out / "inputs").exists():
        shutil.rmtree(out / "inputs")
    (out / "inputs").mkdir()
    write_table(inputs["table"])
    write_images(inputs["images"])
    summary = {
        "interpreter": {"path": python, **facts},
        "inputs": {name: tree_sha256(path) for name, path in inputs.items()},
        "scenarios": {},
    }
    start = time.monotonic()
    for scenario in SCENARIOS:
        if scenario.name not in names:
            continue
        print(f"[{scenario.name}]", flush=True)
        record = run_scenario(python, scenario, out, inputs)
        summary["scenarios"][scenario.name] = record
        print(f"  {record['status']} in {record['wall_seconds']} s", flush=True)
    summary["wall_seconds"] = round(time.monotonic() - start, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    failed = [name for name, record in summary["scenarios"].items() if record["status"] != "ok"]
    print(f"wrote {out / 'summary.json'} ({summary['wall_seconds']} s)"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# Comparing


def differences(a: dict, b: dict, label_a: str = "A", label_b: str = "B") -> list[str]:
    """What differs between two scenario records: tensors, progress, state, results, metrics."""
    found = []
    for part in ("model", "checkpoint", "state"):
        left, right = a.get(part, {}), b.get(part, {})
        for name in sorted(set(left) | set(right)):
            if name not in right:
                found.append(f"{part}: {name} only in {label_a}")
            elif name not in left:
                found.append(f"{part}: {name} only in {label_b}")
            elif left[name] != right[name]:
                found.append(f"{part}: {name} differs")
    for part in ("progress", "results"):
        left, right = a.get(part, {}), b.get(part, {})
        for key in sorted(set(left) | set(right)):
            if left.get(key, "<absent>") != right.get(key, "<absent>"):
                found.append(f"{part}.{key}: {left.get(key, '<absent>')!r} vs {right.get(key, '<absent>')!r}")
    left, right = a.get("metrics", []), b.get("metrics", [])
    if len(left) != len(right):
        found.append(f"metrics: {len(left)} lines vs {len(right)}")
    for line, (x, y) in enumerate(zip(left, right), start=1):
        for key in sorted(set(x) | set(y)):
            if x.get(key, "<absent>") != y.get(key, "<absent>"):
                found.append(f"metrics line {line} {key}: {x.get(key, '<absent>')!r} vs {y.get(key, '<absent>')!r}")
    return found


def report(title: str, found: list[str], limit: int = 12) -> None:
    print(f"{'SAME' if not found else 'DIFFERENT':9s} {title}")
    for line in found[:limit]:
        print(f"            {line}")
    if len(found) > limit:
        print(f"            ... and {len(found) - limit} more")


def compare(path_a: Path, path_b: Path) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (path_a, path_b))
    print(f"A: {path_a}  ({a['interpreter']['vaekit_file']}, torch {a['interpreter']['torch']})")
    print(f"B: {path_b}  ({b['interpreter']['vaekit_file']}, torch {b['interpreter']['torch']})")
    anything = False
    if a["inputs"] != b["inputs"]:
        anything = True
        report("inputs (the CSV and PNGs the script wrote; compare results are meaningless)",
               [name for name in sorted(a["inputs"]) if a["inputs"][name] != b["inputs"].get(name)])
    order = [s.name for s in SCENARIOS]
    names = sorted(set(a["scenarios"]) | set(b["scenarios"]), key=lambda n: (order.index(n) if n in order else 99, n))
    for name in names:
        left, right = a["scenarios"].get(name), b["scenarios"].get(name)
        if left is None or right is None:
            found = [f"trained only in {'A' if right is None else 'B'}"]
        else:
            found = [f"FAILED in {label}: {record['error']}"
                     for label, record in (("A", left), ("B", right)) if record["status"] != "ok"]
            if not found:
                found = differences(left, right)
        anything |= bool(found)
        report(name, found)
    for label, summary in (("A", a), ("B", b)):
        killed, straight = (summary["scenarios"].get(n) for n in RESUME_PAIR)
        if killed is None or straight is None:
            continue
        title = f"{label}: {RESUME_PAIR[0]} == {RESUME_PAIR[1]}"
        if killed["status"] != "ok" or straight["status"] != "ok":
            found = ["not both trained"]
        else:
            found = differences(killed, straight, *RESUME_PAIR)
        anything |= bool(found)
        report(title, found)
    return 1 if anything else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["compare"]:
        parser = argparse.ArgumentParser(prog="same_weights.py compare",
                                         description="Compare two summaries; exit 1 if anything differs.")
        parser.add_argument("a", type=Path, help="summary.json of one interpreter (e.g. the old code)")
        parser.add_argument("b", type=Path, help="summary.json of the other (e.g. the new code)")
        args = parser.parse_args(argv[1:])
        return compare(args.a, args.b)
    parser = argparse.ArgumentParser(
        prog="same_weights.py", description=__doc__.split("\n\n")[0],
        epilog="compare mode: same_weights.py compare A/summary.json B/summary.json")
    parser.add_argument("--python", help="the venv python that trains, e.g. /work/base/.venv/bin/python")
    parser.add_argument("--out", type=Path, help="folder for the runs and summary.json (its runs are replaced)")
    parser.add_argument("--only", help="comma-separated scenario names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the scenarios and their flags, then exit")
    parser.add_argument("--train-flag", action="append", default=[], metavar="FLAG",
                        help="a flag for every scenario's `vaekit train`, repeatable: --train-flag=--step=autograd "
                             "trains a vaekit that has the explicit CPU step with autograd's, to compare with a "
                             "version from before it")
    args = parser.parse_args(argv)
    EXTRA_FLAGS[:] = args.train_flag
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:18s} {scenario.kind:9s} {shlex.join(scenario.flags + COMMON)}"
                  + (f"\n{'':28s} ({scenario.note})" if scenario.note else ""))
        return 0
    if not args.python or not args.out:
        parser.error("--python and --out are required (or: compare A B, or --list)")
    names = [s.name for s in SCENARIOS]
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown scenarios {unknown}; known: {', '.join(names)}")
        names = wanted
    return run_all(args.python, args.out.resolve(), names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
