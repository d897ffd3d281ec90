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
)
from vaekit.cli.text_output import check_out, write_lines

EXAMPLES = """\
examples:
  vaekit sample runs/digits --n 64 --out grid.png      a PNG grid of generated images
  vaekit sample runs/digits --n 1000 --out x.npy       the decoded means as an array
  vaekit sample runs/table --n 500 --out rows.csv      rows in the table's own units and columns
  vaekit sample runs/text --n 10 --beam 4              sentences on stdout (or --out s.txt, s.jsonl)

Each example is E[x|z] for z ~ N(0, I): pixel probabilities as grey levels for images; --stochastic
draws x ~ p(x|z) instead, and --temperature T draws z ~ N(0, T²I). A text run decodes each z ~ N(0, I)
to a sentence: greedily (the likeliest word at each step), by beam search (--beam N), or drawing each
word from p(xₜ | x<ₜ, z) sharpened by --temperature T (--stochastic: T = 1)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="generate new data from a trained run", epilog=EXAMPLES,
        description="Decode samples of the prior p(z) = N(0, I) with a trained run's decoder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    parser.add_argument("--n", type=int, default=64, help="how many examples (default 64)")
    add_out_flag(parser, "output file: .png (images), .npy or .csv (tables), .txt or .jsonl (text)",
                 unset="stdout, for a text run")
    add_seed_flag(parser, "the prior draws")
    parser.add_argument("--temperature", type=float, metavar="T",
                        help="draw z ~ N(0, T²I): below 1 nearer the prior's mean, above 1 wilder (default 1); a text "
                             "run: draw each word at softmax temperature T (default: greedy)")
    parser.add_argument("--beam", type=int, default=1, metavar="N",
                        help="a text run: beam search of width N (default 1: greedy)")
    parser.add_argument("--stochastic", action="store_true",
                        help="draw x ~ p(x|z) instead of E[x|z] (binary pixels for a Bernoulli model)")
    parser.add_argument("--columns-per-row", type=int, default=8, help="PNG grid width (default 8)")
    parser.add_argument("--label", action="append", metavar="NAME",
                        help="a conditional run's class to generate, by its name in the data (repeat for several, "
                             "--n each; default: the classes in turn)")
    parser.add_argument("--per-label", type=int, metavar="N",
                        help="a conditional run: N samples of every class, a row per class, instead of --n "
                             "(default off)")
    add_json_flag(parser, "what was written")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.errors import UserError
    from vaekit.reporting.outputs import write_examples
    from vaekit.reporting.pictures import check_grid
    from vaekit.runs.trained import TrainedVAE

    if args.n < 1 or (args.per_label is not None and args.per_label < 1):
        raise UserError(f"--n {args.n} --per-label {args.per_label}: ask for at least one sample")
    if args.temperature is not None and not args.temperature > 0:
        raise UserError(f"--temperature {args.temperature}: must be above 0 (1 draws from the prior)")
    trained = TrainedVAE(args.run_dir, device=args.device)
    check_out(args, trained.text is not None, "a .png, .npy or .csv file")
    if trained.text is not None:
        return _sentences(args, trained)
    if args.beam != 1:
        raise UserError(f"--beam {args.beam}: is for text runs, which decode word by word")
    labels = _labels(args, trained)
    count = args.n if labels is None else len(labels)
    columns = args.per_label or args.columns_per_row
    if args.out.lower().endswith(".png"):  # before decoding what could not be written
        check_grid(args.out, count, *trained.data.event_shape[-2:], columns)
    examples = trained.sample(count, seed=args.seed, temperature=args.temperature or 1.0,
                              stochastic=args.stochastic, labels=labels)
    write_examples(args.out, examples, trained.data, columns)
    if args.json:
        print(json.dumps({"out": args.out, "count": count, "shape": list(examples.shape)}))
    else:
        print(f"wrote {count} samples to {args.out}")
    return 0


def _sentences(args: argparse.Namespace, trained) -> int:  # trained: TrainedVAE of a text run
    from vaekit.errors import UserError

    if args.label or args.per_label:
        raise UserError(f"{trained.run_dir}: --label and --per-label need a conditional VAE; a text run has no labels")
    temperature = args.temperature if args.temperature is not None else (1.0 if args.stochastic else None)
    sentences = trained.text.sample(args.n, seed=args.seed, temperature=temperature, beam=args.beam)
    if args.out is not None or not args.json:  # with --json and no file, the sentences go into the JSON object
        write_lines(args.out, sentences, [{"sentence": line} for line in sentences])
    if args.json:
        print(json.dumps({"out": args.out, "count": len(sentences), **({} if args.out else {"sentences": sentences})}))
    elif args.out is not None:
        print(f"wrote {len(sentences)} sentences to {args.out}")
    return 0


def _labels(args: argparse.Namespace, trained):  # -> np.ndarray | None
    """The class of each sample: --label NAME (--n of each), --per-label N (N of every class), or None."""
    import numpy as np

    from vaekit.errors import UserError

    if (args.label or args.per_label) and not trained.conditional:
        raise UserError(f"{trained.run_dir}: --label and --per-label need a conditional VAE "
                        "(vaekit train --conditional); this run models x alone")
    if args.per_label is not None:
        return np.repeat(np.arange(trained.model.classes), args.per_label)
    if args.label:
        return np.repeat(trained.labels.indices(args.label), args.n)
    return None
