"""What the commands share for a text run: lines in (--text, or the run's own data), lines out (stdout, .txt or
.jsonl), and --out's check for the other runs, whose outputs are files."""

from __future__ import annotations

import argparse
import json
from typing import Any

TEXT_SUFFIXES = (".txt", ".jsonl")


def add_text_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--text", action="append", metavar="LINE",
                        help=f"a text run: {what} (repeat for several; default: lines of --data or the run's test "
                             "split)")


def check_out(args: argparse.Namespace, text: bool, files: str, text_suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> None:
    """A text run writes to stdout without --out, or to a file of `text_suffixes` (.txt or .jsonl); another run
    needs --out (`files` says which); --text is for a text run only."""
    from vaekit.cli.options import refuse_existing
    from vaekit.errors import UserError

    if getattr(args, "text", None) and not text:
        raise UserError("--text: gives lines to a text run, and this run models other data; pass --data instead")
    if args.out is None:
        if not text:
            raise UserError(f"--out: this run writes files; name one ({files})")
        return
    if text and not args.out.lower().endswith(text_suffixes):
        raise UserError(f"--out {args.out}: a text run writes {' or '.join(text_suffixes)} (or leave --out out "
                        "for stdout)")
    refuse_existing(args.out, args.overwrite)


def input_lines(args: argparse.Namespace, trained: Any, count: int | None = None, typed: bool = True) -> list[str]:
    """--text lines (unless not `typed`), or the first `count` (all) lines of --data or the run's split (--split,
    where the command has it), as its tokenizer reads them."""
    import numpy as np

    from vaekit.cli.options import data_overrides
    from vaekit.errors import UserError

    if typed and getattr(args, "text", None):
        return list(args.text)
    split = getattr(args, "split", None)
    settings = data_overrides(args)
    chosen, _ = trained.load_split(settings.pop("source", None), split, **settings)
    lines = trained.codec.decode(np.asarray(chosen.x[:count]))
    if not lines:
        raise UserError(f"{trained.run_dir}: the {split or 'test'} split holds no lines; pass --text or --data")
    return lines


def write_lines(out: str | None, lines: list[str], records: list[dict[str, Any]]) -> None:
    """`lines` to stdout (no --out) or a .txt file; `records` as one JSON object a line to a .jsonl file."""
    from vaekit.runs.files import atomic_write_text

    if out is None:
        print("\n".join(lines))
    elif out.lower().endswith(".jsonl"):
        atomic_write_text(out, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    else:
        atomic_write_text(out, "".join(f"{line}\n" for line in lines))
