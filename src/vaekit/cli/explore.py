"""vaekit explore: a live latent-space explorer in the browser, served from 127.0.0.1 only."""

from __future__ import annotations

import argparse

from vaekit.cli.options import add_debug_flag, add_run_flags

DEFAULT_PORT = 8765

EXAMPLES = """\
examples:
  vaekit explore runs/digits                 serve http://127.0.0.1:8765/ and open it in a browser
  vaekit explore runs/digits --port 0        any free port (the URL printed says which)

The page has one slider per active latent dimension (KL above 0.01 nats, most KL first), decoded
live by this process from the run's weights; a strip of test examples (click one: the sliders move
to its posterior mean); and an interpolation between the last two clicked. Only this machine can
connect. Ctrl-C stops the server."""


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 1 to 65535, or 0 for any free one")
    return port


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explore", help="explore a run's latent space live in the browser", epilog=EXAMPLES,
        description="Serve an interactive page that decodes latent codes of a trained run as you move sliders.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser, writes=False)
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"the port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.errors import UserError
    from vaekit.reporting.explorer import Explorer
    from vaekit.reporting.explorer_server import make_server
    from vaekit.runs.trained import TrainedVAE

    trained = TrainedVAE(args.run_dir, device=args.device)
    if trained.text is not None:
        raise UserError(f"{args.run_dir}: the explorer shows pictures and values, and this run models text; its "
                        "report.html shows its sentences, and sample, reconstruct, interpolate and traverse print them")
    explorer = Explorer(trained)
    server = make_server(explorer, args.port)
    # flush: whoever started us through a pipe (a test, a script) reads the URL now, not at exit
    print(f"serving {args.run_dir} at {server.url} — Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)  # Ctrl-C is how a server is meant to end: status 0, no traceback
    finally:
        server.server_close()
    return 0
