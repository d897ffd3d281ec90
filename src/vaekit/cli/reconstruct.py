"""vaekit reconstruct: encode data and decode it again ("conversion" through the latent code)."""

from __future__ import annotations

import argparse
import json

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_json_flag,
    add_out_flag,
    add_run_flags,
    add_seed_flag,
    add_split_flag,
    data_overrides,
)
from vaekit.cli.text_output import add_text_flag, check_out, input_lines, write_lines

EXAMPLES = """\
examples:
  vaekit reconstruct runs/digits --out recon.png                 the run's own test split
  vaekit reconstruct runs/fmnist --data fashion-mnist --n 16 --out recon.png
  vaekit reconstruct runs/table --data new_rows.csv --out recon.csv   original units and columns
  vaekit reconstruct runs/text --text "i like the cat ." --text "where is it ?"   sentences, on stdout

Each input x is encoded to the mean of q(z|x) and decoded to E[x|z]. PNG output shows the
originals with their reconstructions beneath; .npy and .csv hold the reconstructions only. A text run
prints each line (as its tokenizer reads it) beside the sentence decoded greedily from μ(x) (--beam N:
by beam search); --out writes them to a .txt (tab-separated) or .jsonl file."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reconstruct", help="reconstruct data through a trained run", epilog=EXAMPLES,
        description="Encode inputs to the posterior mean and decode them again.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    add_data_source_flags(parser)
    add_split_flag(parser)
    parser.add_argument("--n", type=int, help="only N examples, spread evenly over the classes when the data has "
                        "labels, else the first N (default 32 for PNG, else all)")
    add_seed_flag(parser, "the examples --n picks in each class")
    add_out_flag(parser, "output file: .png (images), .npy or .csv (tables), .txt or .jsonl (text)",
                 unset="stdout, for a text run")
    add_text_flag(parser, "a sentence to reconstruct")
    parser.add_argument("--beam", type=int, default=1, metavar="N",
                        help="a text run: decode by beam search of width N (default 1: greedy)")
    add_json_flag(parser, "the reconstruction error")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.errors import UserError
    from vaekit.reporting.outputs import write_reconstructions
    from vaekit.runs.trained import TrainedVAE

    trained = TrainedVAE(args.run_dir, device=args.device)
    check_out(args, trained.text is not None, "a .png, .npy or .csv file")
    if trained.text is not None:
        return _sentences(args, trained)
    settings = data_overrides(args)
    chosen, _ = trained.load_split(settings.pop("source", None), args.split, **settings)
    count = args.n if args.n is not None else (32 if args.out.lower().endswith(".png") else len(chosen))
    if count < 1:
        raise UserError(f"--n {count}: ask for at least one example")
    picked = chosen.spread(count, args.seed)
    x = np.asarray(picked.x)
    reconstructions = trained.reconstruct(x, picked.y)  # a conditional run's with each input's own label
    write_reconstructions(args.out, x, reconstructions, trained.data, lengths=picked.lengths)  # WAVs: unpadded
    error = np.abs(reconstructions.astype(np.float64) - x.astype(np.float64))
    by_column = dict(zip(trained.data.columns, error.mean(axis=0).tolist())) if trained.data.columns else None
    if args.json:
        print(json.dumps({"out": args.out, "count": len(x), "mean_absolute_error": float(error.mean()),
                          **({"mean_absolute_error_by_column": by_column} if by_column else {})}))
    elif by_column:
        columns = ", ".join(f"{name} {value:.4g}" for name, value in by_column.items())
        print(f"wrote {len(x)} reconstructions to {args.out} (mean absolute error per column, in its units: {columns})")
    else:
        print(f"wrote {len(x)} reconstructions to {args.out} (mean absolute error {error.mean():.4g} in data units)")
    return 0


def _sentences(args: argparse.Namespace, trained) -> int:  # trained: TrainedVAE of a text run
    from vaekit.errors import UserError

    if args.n is not None and args.n < 1:
        raise UserError(f"--n {args.n}: ask for at least one line")
    pairs = trained.text.reconstruct(input_lines(args, trained, args.n if args.n is not None else 32),
                                     beam=args.beam)
    exact = sum(given == output for given, output in pairs)
    records = [{"input": given, "reconstruction": output} for given, output in pairs]
    if args.out is not None or not args.json:  # with --json and no file, the pairs go into the JSON object
        write_lines(args.out, [f"{given}\t{output}" for given, output in pairs], records)
    if args.json:
        pairs_if_printed = {} if args.out else {"pairs": records}
        print(json.dumps({"out": args.out, "count": len(pairs), "exact": exact, **pairs_if_printed}))
    elif args.out is not None:
        print(f"wrote {len(pairs)} reconstructions to {args.out} ({exact} exactly the input)")
    return 0
