"""vaekit sample: decode draws from the prior p(z) = N(0, I) into new data."""

from __future__ import annotations

import argparse
import json

from vaekit.cli.options import (
    add_debug_flag,
    add_json_flag,
    add_out_flag,
    add_run_flags,
    add_seed_flag,
    refuse_existing,
)

EXAMPLES = """\
examples:
  vaekit sample runs/digits --n 64 --out grid.png      a PNG grid of generated images
  vaekit sample runs/digits --n 1000 --out x.npy       the decoded means as an array
  vaekit sample runs/table --n 500 --out rows.csv      rows in the table's own units and columns

Each example is E[x|z] for z ~ N(0, I): pixel probabilities as grey levels for images; --stochastic
draws x ~ p(x|z) instead, and --temperature T draws z ~ N(0, T²I)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="generate new data from a trained run", epilog=EXAMPLES,
        description="Decode samples of the prior p(z) = N(0, I) with a trained run's decoder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    parser.add_argument("--n", type=int, default=64, help="how many examples (default 64)")
    add_out_flag(parser, "output file: .png (images), .npy or .csv (tables)")
    add_seed_flag(parser, "the prior draws")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="draw z ~ N(0, T²I): below 1 nearer the prior's mean, above 1 wilder (default 1)")
    parser.add_argument("--stochastic", action="store_true",
                        help="draw x ~ p(x|z) instead of E[x|z] (binary pixels for a Bernoulli model)")
    parser.add_argument("--columns-per-row", type=int, default=8, help="PNG grid width (default 8)")
    add_json_flag(parser, "what was written")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.errors import UserError
    from vaekit.reporting.outputs import write_examples
    from vaekit.reporting.pictures import check_grid
    from vaekit.runs.trained import TrainedVAE

    if args.n < 1:
        raise UserError(f"--n {args.n}: ask for at least one sample")
    if not args.temperature > 0:
        raise UserError(f"--temperature {args.temperature}: must be above 0 (1 draws from the prior)")
    refuse_existing(args.out, args.overwrite)
    trained = TrainedVAE(args.run_dir, device=args.device)
    if args.out.lower().endswith(".png"):  # before decoding what could not be written
        check_grid(args.out, args.n, *trained.data.event_shape[-2:], args.columns_per_row)
    examples = trained.sample(args.n, seed=args.seed, temperature=args.temperature, stochastic=args.stochastic)
    write_examples(args.out, examples, trained.data, args.columns_per_row)
    if args.json:
        print(json.dumps({"out": args.out, "count": args.n, "shape": list(examples.shape)}))
    else:
        print(f"wrote {args.n} samples to {args.out}")
    return 0
