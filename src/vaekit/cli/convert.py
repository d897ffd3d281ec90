"""vaekit convert: render inputs as another class through a conditional VAE (their style, another label)."""

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
    refuse_existing,
)

EXAMPLES = """\
examples:
  vaekit convert runs/digits-c --to-label 7 --out sevens.png        the test digits, each written as a 7
  vaekit convert runs/fmnist-c --data fashion-mnist --to-label all --n 8 --out analogies.png
  vaekit convert runs/people-c --data people.csv --to-label tall --out tall.csv   in the table's own units

Each input x with its own label y is encoded to z = μ(x, y), the mean of q(z|x, y), and decoded with the
target label y': E[x|z, y']. z holds what the label does not (a digit's slant, a garment's shade), so the
conversion keeps the input's style. A PNG shows the inputs above their conversions; with --to-label all,
a row per input and a column per class (Kingma et al. 2014's analogies). .npy and .csv hold the
conversions alone (for all: every input's every class, input by input)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="render inputs as another class (a conditional run)", epilog=EXAMPLES,
        description="Encode inputs with their own labels and decode them with another: the same style, another "
                    "class. Needs a run trained with --conditional.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    add_data_source_flags(parser)
    add_split_flag(parser)
    parser.add_argument("--to-label", required=True, metavar="NAME",
                        help="the class to render every input as, by its name in the data, or all")
    parser.add_argument("--n", type=int, help="only N inputs, spread evenly over the classes (default 16 for PNG, "
                        "8 with --to-label all, else all)")
    add_seed_flag(parser, "the inputs --n picks in each class")
    add_out_flag(parser, "output file: .png (pictures), .npy, or .csv (tables)")
    add_json_flag(parser, "what was written")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.errors import UserError
    from vaekit.reporting.outputs import write_examples, write_reconstructions
    from vaekit.runs.trained import TrainedVAE

    refuse_existing(args.out, args.overwrite)
    trained = TrainedVAE(args.run_dir, device=args.device)
    if not trained.conditional:
        raise UserError(f"{trained.run_dir}: --to-label needs a conditional VAE (vaekit train --conditional); "
                        "this run models x alone")
    every = args.to_label == "all"
    targets = np.arange(trained.model.classes) if every else trained.labels.indices([args.to_label], "--to-label")
    settings = data_overrides(args)
    chosen, _ = trained.load_split(settings.pop("source", None), args.split, **settings)
    if chosen.y is None:
        raise UserError("the inputs have no labels, and convert encodes each with its own; give the data its labels")
    picture = args.out.lower().endswith(".png")
    count = args.n if args.n is not None else (8 if every else 16) if picture else len(chosen)
    if count < 1:
        raise UserError(f"--n {count}: ask for at least one input")
    picked = chosen.spread(count, args.seed)
    x, y = np.asarray(picked.x), np.asarray(picked.y)
    # Input by input, every target: (inputs * targets, *event_shape).
    converted = trained.convert(np.repeat(x, len(targets), axis=0), np.repeat(y, len(targets)),
                                np.tile(targets, len(x)))
    names = list(trained.data.class_names or ())
    if picture and every:
        _write_analogies(args.out, x, converted, y, names, trained)
    elif picture:
        write_reconstructions(args.out, x, converted, trained.data)
    else:
        write_examples(args.out, converted, trained.data)
    what = "every class" if every else args.to_label
    if args.json:
        print(json.dumps({"out": args.out, "inputs": len(x), "to_labels": [names[t] for t in targets]}))
    else:
        print(f"wrote {len(x)} inputs rendered as {what} to {args.out}")
    return 0


def _write_analogies(out: str, x, converted, y, names: list[str], trained) -> None:
    """A row per input: the input, then it as each class."""
    import numpy as np

    from vaekit.reporting.latent_pictures import labelled_grid
    from vaekit.runs.files import atomic_write_bytes

    rows = converted.reshape(len(x), -1, *x.shape[1:])
    grid = np.concatenate([x[:, None].astype(rows.dtype), rows], axis=1)
    png = labelled_grid(grid, trained.data, [f"a {names[label]}" for label in y], ["input", *names],
                        "each input (left) rendered as every class: z = μ(x, y) decoded with each y'")
    atomic_write_bytes(out, png)
