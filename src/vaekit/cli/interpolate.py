"""vaekit interpolate: decode the path between the posterior means of two inputs."""

from __future__ import annotations

import argparse

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_decode_label_flag,
    add_out_flag,
    add_run_flags,
    add_seed_flag,
    add_split_flag,
    data_overrides,
    picture_or_table,
)
from vaekit.cli.text_output import add_text_flag, check_out, input_lines, write_lines

EXAMPLES = """\
examples:
  vaekit interpolate runs/fmnist --out interp.png                   8 random pairs of test images
  vaekit interpolate runs/fmnist --from 3 --to 17 --steps 12 --path slerp --out one.png
  vaekit interpolate runs/table --pairs 4 --out interp.csv          rows in the table's own units
  vaekit interpolate runs/text --text "i want to go home ." --text "she was not there ."   a homotopy

Each input is encoded to the mean of q(z|x); the codes between two means are decoded to E[x|z]. A
row of the picture starts and ends with the two inputs themselves. slerp walks along the great
circle between the codes, which stays where the prior N(0, I) has its mass in many dimensions. A text run
prints the sentences decoded greedily along each path (Bowman et al.'s homotopies), of two --text lines
or of pairs of its test lines; --out writes them to a .txt or .jsonl file."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "interpolate", help="decode paths between the codes of pairs of inputs", epilog=EXAMPLES,
        description="Decode the path between the posterior means of pairs of inputs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    add_data_source_flags(parser)
    add_split_flag(parser)
    parser.add_argument("--pairs", type=int, default=8, help="pairs chosen at random by --seed (default 8)")
    parser.add_argument("--from", dest="first", type=int, metavar="I",
                        help="the index of one end, with --to (default: --pairs at random)")
    parser.add_argument("--to", dest="second", type=int, metavar="J",
                        help="the index of the other end, with --from (default: --pairs at random)")
    add_decode_label_flag(parser, "each pair's first input's own")
    parser.add_argument("--steps", type=int, default=10,
                        help="decoded codes along each path, ends included (default 10)")
    parser.add_argument("--path", choices=["linear", "slerp"], default="linear",
                        help="straight or spherical (default linear)")
    add_seed_flag(parser, "the random pairs")
    add_out_flag(parser, "output file: .png, or .csv for tables and arrays, or a folder of WAV files for sound, "
                         ".txt or .jsonl for text", unset="stdout, for a text run")
    add_text_flag(parser, "one end of the path (twice: the start, then the end)")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def _pairs(args: argparse.Namespace, count: int) -> list[tuple[int, int]]:
    import numpy as np

    from vaekit.errors import UserError

    if (args.first is None) != (args.second is None):
        raise UserError("--from I and --to J go together: pass both, or neither for random pairs")
    if args.first is not None:
        for flag, index in (("--from", args.first), ("--to", args.second)):
            if not 0 <= index < count:
                raise UserError(f"{flag} {index}: the inputs are numbered 0 to {count - 1}")
        return [(args.first, args.second)]
    if args.pairs < 1 or count < 2:
        raise UserError(f"--pairs {args.pairs}: ask for at least one pair, of at least 2 inputs (there are {count})")
    rng = np.random.default_rng(args.seed)
    return [tuple(int(i) for i in rng.choice(count, 2, replace=False)) for _ in range(args.pairs)]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from vaekit.reporting.latent_pictures import interpolation_png, latent_csv
    from vaekit.reporting.outputs import drawable, write_examples
    from vaekit.runs.files import atomic_write_bytes, atomic_write_text
    from vaekit.runs.trained import TrainedVAE

    trained = TrainedVAE(args.run_dir, device=args.device)
    check_out(args, trained.text is not None, "a .png or .csv file, or a folder for sound")
    if trained.text is not None:
        return _homotopies(args, trained)
    kind = picture_or_table(args.out, len(trained.data.event_shape) == 1, True, trained.data.audio is not None)
    settings = data_overrides(args)
    x, y = trained.load_inputs(settings.pop("source", None), args.split, **settings)
    pairs = _pairs(args, len(x))
    first, second = [i for i, _ in pairs], [j for _, j in pairs]
    starts, ends = np.asarray(x[first]), np.asarray(x[second])
    paths = trained.interpolate(starts, ends, args.steps, args.path, labels_from=None if y is None else y[first],
                                labels_to=None if y is None else y[second], label=trained.labels.index(args.label))
    if kind == "csv":
        keys = {"pair": np.repeat(np.arange(len(pairs)), args.steps)[:, None],
                "t": np.tile(np.linspace(0, 1, args.steps), len(pairs))[:, None]}
        atomic_write_text(args.out, latent_csv(paths, trained.data, keys))
    elif kind == "wav":  # sound: pair by pair, step by step, 00000.wav = the first pair's first step
        write_examples(Path(args.out), paths.reshape(-1, *trained.data.event_shape), trained.data)
    else:
        labels = [f"{i} → {j}" for i, j in pairs]
        if not drawable(trained.data):
            starts = ends = None
        atomic_write_bytes(args.out, interpolation_png(starts, paths, ends, trained.data, labels, args.path))
    print(f"wrote {len(pairs)} {args.path} interpolations of {args.steps} steps to {args.out}")
    return 0


def _homotopies(args: argparse.Namespace, trained) -> int:  # trained: TrainedVAE of a text run
    from vaekit.errors import UserError

    if args.label is not None:
        raise UserError(f"--label {args.label}: needs a conditional VAE; a text run has no labels")
    if args.text is not None and len(args.text) != 2:
        raise UserError(f"--text: give two lines, the start and the end of the path (given {len(args.text)})")
    lines = input_lines(args, trained)
    pairs = [(0, 1)] if args.text else _pairs(args, len(lines))
    text_lines, records = [], []
    for number, (i, j) in enumerate(pairs):
        path = trained.text.interpolate(lines[i], lines[j], args.steps, args.path)
        text_lines += ([""] if number else []) + path
        records += [{"pair": number, "step": step, "t": step / (args.steps - 1), "sentence": sentence}
                    for step, sentence in enumerate(path)]
    write_lines(args.out, text_lines, records)
    if args.out is not None:
        print(f"wrote {len(pairs)} {args.path} homotopies of {args.steps} steps to {args.out}")
    return 0
