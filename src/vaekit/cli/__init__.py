"""The `vaekit` command: a thin layer that parses flags, calls the library and prints.

Each sub-command is a module with `add_parser(subparsers)` and `run(args) -> int`. A `UserError`
ends as one line on stderr and exit status 2 (`--debug` shows the traceback); an interrupted
training run ends with a line on how to resume and status 130 (Ctrl-C) or 143 (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from vaekit import __version__
from vaekit.cli import (
    convert,
    encode,
    evaluate,
    explore,
    gradient_variance,
    info,
    interpolate,
    latents,
    manifold,
    reconstruct,
    reparam_demo,
    report,
    sample,
    train,
    traverse,
)
from vaekit.cli.options import OneLineParser
from vaekit.errors import UserError
from vaekit.runs.files import is_file_system_refusal, refusal

COMMANDS: list[ModuleType] = [
    train, evaluate, sample, reconstruct, convert, encode, interpolate, traverse, manifold, latents, info, report,
    reparam_demo, gradient_variance, explore,
]

DESCRIPTION = """\
vaekit trains variational auto-encoders (Kingma & Welling) on images, arrays and tables, and
uses them to generate, encode and reconstruct data. Figures are in nats per example.

  vaekit train --data digits --out runs/digits      train on the embedded 8x8 digits
  vaekit sample runs/digits --n 64 --out grid.png   decode prior samples
  vaekit info runs/digits                           settings and final figures

Run `vaekit COMMAND --help` for each command's flags and examples."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vaekit", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


class _WarningHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record (tests swap it between calls)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not setStream(): that would flush the previous, possibly closed, stream
        super().emit(record)


def _show_library_warnings() -> None:
    """Library code logs warnings (e.g. skipped files); the CLI shows them as `vaekit: warning: ...`."""
    logger = logging.getLogger("vaekit")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        handler = _WarningHandler()
        handler.setFormatter(logging.Formatter("vaekit: warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def _handle(args: argparse.Namespace) -> int | None:
    """The command, with torch's CPU threads set to --threads for all of it (where the command takes it and it
    is given: torch is imported only then, so that `info` and --help stay quick)."""
    if getattr(args, "threads", None) is None:
        return args.handler(args)
    from vaekit.runtime.cpu import torch_threads

    with torch_threads(args.threads):
        return args.handler(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_library_warnings()
    try:
        return _handle(args) or 0
    except UserError as error:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"vaekit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        # Training stops gracefully (vaekit.training.loop.TrainingInterrupted): its message says how to
        # resume, and its exit status tells SIGINT (130) from SIGTERM (143).
        print(f"vaekit {args.command}: {interrupt or 'interrupted'}", file=sys.stderr)
        return getattr(interrupt, "exit_status", 130)
    except BrokenPipeError:
        # `vaekit ... | head` closed the pipe: not an error of ours; point stdout at /dev/null so that
        # the interpreter's final flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:  # after BrokenPipeError, one of them
        # A file the file system refused outside the run's own writes (which say so themselves): one line.
        if not (is_file_system_refusal(error) and error.filename) or getattr(args, "debug", False):
            raise
        print(f"vaekit {args.command}: error: {error.filename}: {refusal(error, Path(error.filename).parent)}",
              file=sys.stderr)
        return 2
