"""Rewrite the README's console transcripts from what the commands print today, or check that they match.

A transcript typed by hand drifts from the program as the program changes. Here each block marked in
README.md as

    <!-- transcript: NAME -->
    ```console
    $ vaekit ...
    ...
    ```
    <!-- /transcript -->

is the output of the commands listed for NAME in TRANSCRIPTS, run in a fresh temporary directory (which
first trains its own short digits run), with the volatile parts (speeds, the temporary path) normalized.

    python tools/readme_transcripts.py            # rewrite the marked blocks of README.md
    python tools/readme_transcripts.py --check    # exit 1 with a diff if README.md differs

tests/test_readme_transcripts.py runs the check. The commands run in this process on one CPU thread, so
the figures are those of any machine with the same torch (a different CPU may move a last digit: then
run the script and look at the diff).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported: the same figures on any core count

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import topic_corpus  # noqa: E402 (tests/helpers.py, after the path that finds it)

README = ROOT / "README.md"
# Files the commands read, written into the temporary directory first.
FILES = {
    "configs/digits.toml": (ROOT / "configs" / "digits.toml").read_text(),
    "typo.toml": "[train]\nlearning_rat = 0.01\n",
    "ten.toml": '[train]\nepochs = "ten"\n',
}
# NAME -> the commands of its block, in order; text after "  #" is shown as a comment, not run.
TRANSCRIPTS = {
    "tour": [
        "vaekit train --config configs/digits.toml --epochs 20 --out runs/demo --quiet",
        "vaekit sample runs/demo --n 64 --out grid.png",
        "vaekit sample runs/demo --n 1000 --out samples.npy --json",
        "vaekit reconstruct runs/demo --out recon.png          # the run's own test split",
        "vaekit encode runs/demo --data digits --split all --out codes.npz",
        "vaekit info runs/demo",
        "vaekit sample runs/demo --out grid.png",
        "vaekit sample runs/demo --n 100000 --out big.png",
    ],
    "settings": [
        "vaekit train --config typo.toml --out runs/x",
        "vaekit train --epoch 3 --out runs/x",
        "vaekit train --config ten.toml --out runs/x",
    ],
    "text": [
        "vaekit train --data sentences.txt --out runs/text --epochs 20 --batch-size 32 --latent-dim 4 --rnn-size 64 "
        "--word-dropout 0.5 --quiet",
        "vaekit sample runs/text --n 3 --beam 4",
        'vaekit reconstruct runs/text --text "My dog chases the ball !" --text "A sailor loads the boat ."',
        'vaekit interpolate runs/text --text "the puppy likes the bone" --text "the chef burns a cake" --steps 5',
        "vaekit traverse runs/text --steps 3 --dims 0",
        "vaekit evaluate runs/text --importance-samples 100",
        "vaekit train --data sentences.txt --out runs/lm --epochs 20 --batch-size 32 --rnn-size 64 --language-model "
        "--quiet",
        "vaekit evaluate runs/lm --importance-samples 1",
    ],
}
GENERATED = {"sentences.txt": lambda path: topic_corpus(path, 1200)}  # tests/helpers.py: 3 topics, 1,200 lines
VOLATILE = [(re.compile(r"[\d,.]+ img/s"), "… img/s"), (re.compile(r"\b\d+(\.\d+)? s of training"), "… s of training"),
            (re.compile(r"^time +[\d.]+ s$", re.M), "time          … s")]
BLOCK = re.compile(r"(<!-- transcript: (?P<name>[\w-]+) -->\n)```console\n.*?```\n(?=<!-- /transcript -->)", re.S)


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run(command: str) -> str:
    """What `command` prints, stdout and stderr together in the order written."""
    from vaekit.cli import main

    argv = shlex.split(command.split("  #", 1)[0])
    assert argv[0] == "vaekit", f"only vaekit commands are run: {command}"
    printed = io.StringIO()
    # SystemExit: argparse's usage errors and --help
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed), contextlib.suppress(SystemExit):
        main(argv[1:])
    return printed.getvalue()


def normalized(text: str, folder: Path) -> str:
    text = text.replace(str(folder.resolve()) + os.sep, "").replace(str(folder) + os.sep, "")
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def transcripts() -> dict[str, str]:
    """Each NAME's block, as printed in a fresh temporary directory."""
    import torch

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="vaekit-transcripts-"))
    try:
        for name, text in FILES.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        for name, write in GENERATED.items():
            write(folder / name)
        blocks = {}
        with inside(folder):
            for name, commands in TRANSCRIPTS.items():
                lines = []
                for command in commands:
                    lines.append(f"$ {command}")
                    output = normalized(run(command), folder)
                    lines += [output] if output else []
                blocks[name] = "\n".join(lines) + "\n"
        return blocks
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def rewritten(readme: str, blocks: dict[str, str]) -> str:
    marked = {match["name"] for match in BLOCK.finditer(readme)}
    missing = sorted(set(blocks) - marked)
    if missing:
        raise SystemExit(f"README.md has no block marked <!-- transcript: {missing[0]} -->")
    return BLOCK.sub(lambda match: f"{match[1]}```console\n{blocks[match['name']]}```\n", readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff if README.md differs; write nothing")
    args = parser.parse_args(argv)
    blocks = transcripts()
    before = README.read_text()  # read after the commands ran, so that an edit made meanwhile is kept
    after = rewritten(before, blocks)
    if args.check:
        if after == before:
            return 0
        diff = difflib.unified_diff(before.splitlines(True), after.splitlines(True), "README.md", "as printed now")
        sys.stdout.writelines(diff)
        print("README.md's transcripts differ from what the commands print; run python tools/readme_transcripts.py")
        return 1
    if after != before:
        README.write_text(after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
