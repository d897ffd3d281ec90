"""Fuzz vaekit's readers for as long as asked: the properties of tests/fuzzing.py, which CI runs for a few
hundred inputs each (tests/test_fuzz_readers.py), called again and again until the time is up.

    .venv/bin/python tools/fuzz.py --seconds 600                 every target, the time shared out equally
    .venv/bin/python tools/fuzz.py --seconds 120 --target toml   one target (repeat --target for more)
    .venv/bin/python tools/fuzz.py --list                        the targets and what each reads

Each call of a target's @given property tries --batch new inputs, drawn at random by hypothesis; first the
inputs the fuzzer once found (tests/fuzzing.py's FOUND) are replayed. Every input must load, or end in one
UserError line naming its file, within the deadline, without a warning and (data and TOML) within
tests/fuzzing.py's MEMORY_BOUND. A failure is shrunk by hypothesis, printed with the input, and ends that
target; hypothesis keeps it in .hypothesis/, so the next pytest run of tests/test_fuzz_readers.py replays it.

Prints, per target, the inputs tried, how many loaded and how many were refused; exits 1 if any target
failed. One process, one thread for torch (OMP_NUM_THREADS=1), like the tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, as tests/conftest.py does
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fuzzing  # noqa: E402


def describe(error: BaseException, limit: int = 2000) -> str:
    """The failure in a few lines: each exception's type and message, where in vaekit it rose, and the input."""
    lines = []
    for failure in getattr(error, "exceptions", None) or [error]:  # hypothesis groups distinct failures
        lines.append(f"  {type(failure).__name__}: {' '.join(str(failure).split())[:500]}")
        frames = [frame for frame in traceback.extract_tb(failure.__traceback__) if "/vaekit/" in frame.filename]
        if frames:
            lines.append(f"    at {frames[-1].filename.split('/src/')[-1]}:{frames[-1].lineno}: {frames[-1].line}")
        for note in getattr(failure, "__notes__", []):
            lines.append("    " + note[:limit].replace("\n", "\n    "))
    return "\n".join(lines)


def fuzz(target: fuzzing.Target, seconds: float, batch: int) -> tuple[bool, float]:
    """Replay the found inputs, then call the target's property until `seconds` have passed; returns whether
    every input passed, and the seconds taken."""
    start = time.monotonic()
    try:
        for value in target.found():
            target.read(value)
        while time.monotonic() - start < seconds:
            fuzzing.property_of(target, max_examples=batch)()
    except BaseException as error:  # noqa: B036 -- a Hang, or Ctrl-C: report what was tried so far
        if isinstance(error, KeyboardInterrupt):
            raise
        print(f"{target.name}: FAILED\n{describe(error)}", flush=True)
        return False, time.monotonic() - start
    return True, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300, help="the whole run's budget (default 300)")
    parser.add_argument("--target", action="append", choices=list(fuzzing.TARGETS),
                        help="a target to fuzz (repeat for more; default: all)")
    parser.add_argument("--batch", type=int, default=50, help="inputs per call of a property (default 50)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(fuzzing.__doc__.split("\n\n")[2])
        return 0
    logging.getLogger("vaekit").setLevel(logging.ERROR)  # the warnings a damaged run logs, thousands of times
    warnings.filterwarnings("ignore", message="Generating overly large repr")  # hypothesis, on a failing input
    import torch

    torch.set_num_threads(1)
    names = args.target or list(fuzzing.TARGETS)
    share = args.seconds / len(names)
    print(f"fuzzing {', '.join(names)} for {args.seconds:.0f} s ({share:.0f} s each)", flush=True)
    results = {}
    for name in names:
        passed, seconds = fuzz(fuzzing.TARGETS[name], share, args.batch)
        results[name] = passed, seconds
        tally = fuzzing.TALLY[name]
        print(f"{name}: {'ok' if passed else 'FAILED'}, {sum(tally.values())} inputs in {seconds:.0f} s "
              f"({tally['loaded']} loaded, {tally['refused']} refused)", flush=True)
    print(f"\n{'target':<12} {'result':<7} {'inputs':>8} {'loaded':>8} {'refused':>8} {'seconds':>8}")
    for name, (passed, seconds) in results.items():
        tally = fuzzing.TALLY[name]
        print(f"{name:<12} {'ok' if passed else 'FAILED':<7} {sum(tally.values()):>8} {tally['loaded']:>8} "
              f"{tally['refused']:>8} {seconds:>8.0f}")
    return 0 if all(passed for passed, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
