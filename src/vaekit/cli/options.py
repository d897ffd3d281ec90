"""Flags shared by several commands, and the parser that reports mistakes in one line."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from vaekit.config import DEVICES

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake prints one line (not the whole usage) and exits with status 2, and an
    unknown flag is named with the nearest known one. No prefix of a flag stands for it (`--epoch 3` is not
    `--epochs 3`): a typo is caught, not guessed at, and a new flag cannot change what an old prefix meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(EXIT_USAGE)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        # Before argparse parses: a typo of a required flag would otherwise be reported as the flag missing.
        args = sys.argv[1:] if args is None else list(args)
        unknown = self._first_unknown_flag(args)
        if unknown is not None:
            close = _nearest(unknown, [flag for flag in self._option_string_actions if flag.startswith("--")])
            hint = f"did you mean {close}?" if close else f"see `{self.prog} --help`"
            print(f"{self.prog}: error: unknown flag {unknown}; {hint}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        return super().parse_known_args(args, namespace)

    def _first_unknown_flag(self, args: list[str]) -> str | None:
        """The first flag in `args` that this parser does not know; a parser of sub-commands looks only
        before the command, whose own parser looks at the rest."""
        has_commands = any(isinstance(action, argparse._SubParsersAction) for action in self._actions)
        for arg in args:
            if arg == "--" or (has_commands and not _looks_like_flag(arg)):
                return None
            if _looks_like_flag(arg) and arg.split("=", 1)[0] not in self._option_string_actions:
                return arg.split("=", 1)[0]
        return None


def _nearest(typed: str, flags: list[str]) -> str | None:
    """The flag `typed` most likely meant: of those it begins (an abbreviation), else of all, by difflib."""
    begun = [flag for flag in flags if flag.startswith(typed)]
    close = difflib.get_close_matches(typed, begun or flags, n=1, cutoff=0.0 if begun else 0.6)
    return close[0] if close else None


def _looks_like_flag(arg: str) -> bool:
    """'--epochs' or '-h', not a negative number such as -1 or -0.5 (a value); as argparse tells them apart."""
    if not arg.startswith("-") or arg == "-" or " " in arg:
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def device_keywords(default: str | None = "cpu") -> dict[str, Any]:
    """--device, as every command takes it; train's default is None: its --config file's, else auto."""
    return {"choices": DEVICES, "default": default,
            "help": f"where the model runs: cpu, cuda, mps, or auto for the first of cuda, mps and cpu there is "
                    f"(default {default or 'auto'})"}


def thread_count(text: str) -> int:
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of threads: use at least one thread")
    return threads


# --threads, as every command that runs the model takes it; `vaekit.cli.main` applies it around the command.
THREADS_KEYWORDS: dict[str, Any] = {
    "type": thread_count, "metavar": "N",
    "help": "torch's CPU threads (default: the physical cores); 1 is faster on a busy machine",
}


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", **device_keywords())


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", **THREADS_KEYWORDS)


def add_seed_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """--seed of a command's random choices; the same seed gives the same output."""
    parser.add_argument("--seed", type=int, default=0, help=f"seed of {what} (default 0)")


def add_overwrite_flag(parser: argparse.ArgumentParser, what: str = "an existing --out file") -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def add_out_flag(parser: argparse.ArgumentParser, what: str, default: str | None = None, *,
                 metavar: str | None = None, unset: str | None = None) -> None:
    """--out, where a command writes: required, unless it has a `default` or `unset` says what happens without it."""
    required = default is None and unset is None
    note = "required" if required else f"default {default if default is not None else unset}"
    parser.add_argument("--out", default=default, required=required, metavar=metavar, help=f"{what} ({note})")


def add_decode_label_flag(parser: argparse.ArgumentParser, default: str) -> None:
    """--label NAME: the class a conditional run decodes with (`RunLabels.index` reads it)."""
    parser.add_argument("--label", metavar="NAME",
                        help=f"a conditional run: the class to decode with, by its name (default: {default})")


def add_json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as one JSON object for scripts")


def parse_size(text: str) -> tuple[int, int]:
    """'32' or '32x48' -> (height, width)."""
    parts = text.lower().split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 32 or 32x48") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 32 or 32x48")
    return sizes  # type: ignore[return-value]


def parse_int_list(text: str) -> tuple[int, ...]:
    """'400' or '300,300' -> (300, 300); an empty string means no hidden layers."""
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes such as 300,300") from None


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def add_data_source_flags(parser: argparse.ArgumentParser, required: bool = False, new_run: bool = False) -> None:
    """--data and the flags that say how to read it (kept together so every command reads data alike).
    `new_run`: train's defaults (DataConfig's); else a run's, which reads data as its own was read."""
    run = "" if new_run else "the run's, else "
    source = "digits" if new_run else "the run's own data"
    parser.add_argument(
        "--data", required=required, metavar="SOURCE",
        help=f"digits | fashion-mnist | mnist | PATH (image or audio folder, .npy, .npz, .csv, IDX folder, "
             f"a recording, a .txt of one sentence per line) (default {source})",
    )
    parser.add_argument("--data-format",
                        choices=["auto", "digits", "idx", "images", "npy", "npz", "csv", "audio", "text"],
                        help="force the reader instead of guessing from the path (default auto: guess)")
    parser.add_argument("--data-dir", help=f"folder of the IDX files for fashion-mnist/mnist "
                                           f"(default {run}/usr/share/datasets/NAME)")
    parser.add_argument("--image-size", type=parse_size, metavar="H[xW]",
                        help=f"resize images of a folder (default {run}as stored)")
    parser.add_argument("--channels", type=int, choices=[1, 3],
                        help=f"force grey (1) or RGB (3) images (default {run}as the images are)")
    parser.add_argument("--sample-rate", type=int, metavar="HZ",
                        help=f"resample recordings to this rate (default {run}the rate most of them have)")
    parser.add_argument("--clip-seconds", type=float, metavar="S",
                        help=f"cut or pad every recording to this length (default {run}the longest one's)")
    parser.add_argument("--label-column", help=f"the CSV column holding labels, not data (default {run}none)")
    parser.add_argument("--columns", type=parse_names, metavar="A,B,...",
                        help=f"the CSV columns to model (default {run}every numeric one)")
    parser.add_argument("--array-key", metavar="KEY", help=f"the .npz array holding the data (default {run}x)")
    parser.add_argument("--label-key", metavar="KEY", help=f"the .npz array holding labels (default {run}y)")
    parser.add_argument("--encoding", metavar="NAME",
                        help=f"of text files, such as latin-1 or cp1252 (default {run}utf-8)")


DATA_FLAG_FIELDS = {
    "data": "source", "data_format": "data_format", "data_dir": "data_dir", "image_size": "image_size",
    "channels": "channels", "label_column": "label_column", "columns": "columns",
    "array_key": "array_key", "label_key": "label_key", "sample_rate": "sample_rate", "clip_seconds": "clip_seconds",
    "encoding": "encoding",
}


def data_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The DataConfig fields the user set on the command line."""
    return {
        field: getattr(args, flag) for flag, field in DATA_FLAG_FIELDS.items() if getattr(args, flag, None) is not None
    }


def refuse_existing(path: str, overwrite: bool) -> None:
    from pathlib import Path

    from vaekit.errors import UserError

    if Path(path).exists() and not overwrite:
        raise UserError(f"{path}: already exists; pass --overwrite to replace it or choose another --out")
    parent = Path(path).absolute().parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"{path}: {parent} is a file, not a folder; choose another --out")
    if not parent.is_dir():
        raise UserError(f"{path}: the folder {parent} does not exist; create it first or choose another --out")


def add_split_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", choices=["train", "validation", "test", "all"],
                        help="which examples (default: test of the run's data, all of a new source)")


def add_run_flags(parser: argparse.ArgumentParser, writes: bool = True) -> None:
    """The run, --device, --threads and (for a command that `writes` a file) --overwrite, as every command
    that uses a run's model takes them."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `vaekit train`")
    add_device_flag(parser)
    add_threads_flag(parser)
    if writes:
        add_overwrite_flag(parser)


def picture_or_table(path: str, flat: bool, pictures: bool, sound: bool = False) -> str:
    """The output kind --out names: "png", "csv" for flat (table or array) data, or "wav" (a folder of WAV files,
    named without a suffix) for sound; one line otherwise."""
    from vaekit.errors import UserError

    suffix = path.lower().rsplit(".", 1)[-1] if "." in Path(path).name else ""
    if suffix == "png" and pictures:
        return "png"
    if suffix == "csv" and flat:
        return "csv"
    if suffix == "" and sound:
        return "wav"
    kinds = ".png" + (" or .csv" if flat else "") + (" or a folder (of WAV files)" if sound else "")
    raise UserError(f"--out {path}: this command writes {kinds} for this run; name --out like out{kinds.split()[0]}")
