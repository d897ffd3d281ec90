"""vaekit report: one self-contained HTML page of a run (RUN/report.html), for a browser, offline."""

from __future__ import annotations

import argparse

from vaekit.cli.options import add_debug_flag, add_out_flag, add_run_flags, refuse_existing

EXAMPLES = """\
examples:
  vaekit report runs/digits                          writes runs/digits/report.html
  vaekit report runs/digits --out ~/digits.html      a copy to send; --overwrite replaces it

The page holds everything inline (pictures as data: URIs, no scripts, fonts or links outside it), so it
opens from a file:// URL with no network, on a phone or a wide screen. Training writes RUN/report.html at
the end of every run; `vaekit evaluate` figures saved since show up when it is written again."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write a run's report, one HTML page with every picture", epilog=EXAMPLES,
        description="Write one self-contained HTML page of a run: settings, data, loss curves, test figures "
                    "and saved evaluations, samples, reconstructions, interpolations, traversals, the KL of "
                    "each latent dimension, the latent codes and the manifold.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    add_out_flag(parser, "where to write the page", metavar="PATH", unset="RUN_DIR/report.html, rewritten freely")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.reporting.report import write_report
    from vaekit.runs.trained import TrainedVAE

    trained = TrainedVAE(args.run_dir, device=args.device)  # first: a wrong RUN_DIR is the likelier mistake
    if args.out is not None:  # RUN_DIR/report.html is derived from the run, so only a named --out is kept
        refuse_existing(args.out, args.overwrite)
    path = write_report(trained, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
