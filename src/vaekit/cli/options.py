"""Flags shared by several commands, and the parser that reports mistakes in one line."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake prints one line (not the whole usage) and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


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


def add_data_source_flags(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--data and the flags that say how to read it (kept together so every command reads data alike)."""
    parser.add_argument(
        "--data", required=required, metavar="SOURCE",
        help="digits | fashion-mnist | mnist | PATH (image folder, .npy, .npz, .csv or IDX folder)",
    )
    parser.add_argument("--data-format", choices=["auto", "digits", "idx", "images", "npy", "npz", "csv"],
                        help="force the reader instead of guessing from the path")
    parser.add_argument("--data-dir", help="folder of the IDX files for fashion-mnist/mnist")
    parser.add_argument("--image-size", type=parse_size, metavar="H[xW]", help="resize images of a folder")
    parser.add_argument("--channels", type=int, choices=[1, 3], help="force grey (1) or RGB (3) images")
    parser.add_argument("--label-column", help="the CSV column holding labels, not data")
    parser.add_argument("--columns", type=parse_names, metavar="A,B,...", help="the CSV columns to model")
    parser.add_argument("--array-key", metavar="KEY", help="the .npz array holding the data (default x)")
    parser.add_argument("--label-key", metavar="KEY", help="the .npz array holding labels (default y)")


DATA_FLAG_FIELDS = {
    "data": "source", "data_format": "data_format", "data_dir": "data_dir", "image_size": "image_size",
    "channels": "channels", "label_column": "label_column", "columns": "columns",
    "array_key": "array_key", "label_key": "label_key",
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
    if not parent.is_dir():
        raise UserError(f"{path}: the folder {parent} does not exist; create it first or choose another --out")


def add_split_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", choices=["train", "validation", "test", "all"],
                        help="which examples (default: test of the run's data, all of a new source)")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The run, the device and --overwrite, as every command that reads a run takes them."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `vaekit train`")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to decode (default cpu)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def picture_or_table(path: str, flat: bool, pictures: bool) -> str:
    """The output kind --out names: "png", or "csv" for flat (table or array) data; one line otherwise."""
    from vaekit.errors import UserError

    suffix = path.lower().rsplit(".", 1)[-1] if "." in path else ""
    if suffix == "png" and pictures:
        return "png"
    if suffix == "csv" and flat:
        return "csv"
    kinds = ".png" + (" or .csv" if flat else "")
    raise UserError(f"--out {path}: this command writes {kinds} for this run; name --out like out{kinds.split()[0]}")
