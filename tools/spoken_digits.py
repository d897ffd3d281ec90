"""Make a folder of spoken digits with Debian's espeak-ng, offline: FOLDER/<digit name>/<voice>-<speed>-<pitch>.wav.

    python tools/spoken_digits.py data/spoken-digits              # 10 digits x 4 voices x 3 speeds x 3 pitches
    python tools/spoken_digits.py data/spoken-digits --voices 2   # fewer, for a quick try

espeak-ng writes 22,050 Hz mono WAV. Each sub-folder is a class (`vaekit latents` colours by it).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en", "en+f3", "en-us+m3", "en+f2", "en-us", "en+m7")
SPEEDS = (120, 150, 180)  # words per minute
PITCHES = (35, 50, 65)  # 0..99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--voices", type=int, default=4, help="how many of the voices to use (default 4, at most 6)")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("spoken_digits: espeak-ng is missing; install it with `apt-get install espeak-ng`", file=sys.stderr)
        return 2
    count = 0
    for digit, voice, speed, pitch in itertools.product(DIGITS, VOICES[: args.voices], SPEEDS, PITCHES):
        out = args.folder / digit / f"{voice.replace('+', '_')}-{speed}-{pitch}.wav"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), digit],
                       check=True, capture_output=True)
        count += 1
    print(f"wrote {count} clips to {args.folder}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
