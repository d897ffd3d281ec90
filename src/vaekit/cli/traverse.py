"""vaekit traverse: sweep each latent dimension around a code and decode it, one row per dimension."""

from __future__ import annotations

import argparse

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_decode_label_flag,
    add_out_flag,
    add_run_flags,
    data_overrides,
    parse_int_list,
    picture_or_table,
)
from vaekit.cli.text_output import add_text_flag, check_out, input_lines, write_lines

EXAMPLES = """\
examples:
  vaekit traverse runs/fmnist --out traverse.png          around the prior's mean, active dimensions by KL
  vaekit traverse runs/fmnist --index 7 --out seven.png    around test image 7's code μ(x)
  vaekit traverse runs/fmnist --index 7 --posterior-scale --out sure.png   by σ(x): what the encoder is unsure of
  vaekit traverse runs/fmnist --all --steps 13 --out all.png

Each row moves one dimension from -3 to +3 standard deviations (the prior's, 1; or with
--posterior-scale the input's posterior σ(x)) with the others held, and is labelled with the
dimension's KL over the run's test split. Dimensions whose KL is below 0.01 nats are inactive: they decode to the
same picture and are left out unless --all. A text run prints the sentences of each sweep (--text LINE
sweeps around that line's code), or writes them to a .txt or .jsonl file.

  vaekit traverse runs/text --steps 5                    sentences along each active dimension"""
KL_EXAMPLES = 2000  # test inputs to estimate each dimension's KL over: quick, and stable to 0.01 nats


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "traverse", help="sweep each latent dimension and decode it", epilog=EXAMPLES,
        description="Decode a sweep of each latent dimension around a base code, one row per dimension.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    add_data_source_flags(parser)
    parser.add_argument("--index", type=int, metavar="I",
                        help="sweep around input I's μ(x) (default: the prior's mean)")
    parser.add_argument("--dims", type=parse_int_list, metavar="A,B,...", help="these dimensions (default: by KL)")
    add_decode_label_flag(parser, "the input's own, or the first class")
    parser.add_argument("--all", action="store_true", help="inactive dimensions too, marked")
    parser.add_argument("--steps", type=int, default=11, help="codes per row (default 11)")
    parser.add_argument("--span", type=float, default=3.0, help="standard deviations each way (default 3)")
    parser.add_argument("--posterior-scale", action="store_true",
                        help="step by the input's posterior σ(x) rather than the prior's 1 (needs --index)")
    add_out_flag(parser, "output file: .png, or .csv for tables and arrays, .txt or .jsonl for text",
                 unset="stdout, for a text run")
    add_text_flag(parser, "the line whose code μ(x) the sweep goes around")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.errors import UserError
    from vaekit.model import latent_paths
    from vaekit.reporting.latent_pictures import latent_csv, traversal_png
    from vaekit.runs.files import atomic_write_bytes, atomic_write_text
    from vaekit.runs.trained import TrainedVAE

    if args.steps < 2 or not args.span > 0:
        raise UserError(f"--steps {args.steps} --span {args.span}: a sweep needs 2 or more steps and a span above 0")
    trained = TrainedVAE(args.run_dir, device=args.device)
    check_out(args, trained.text is not None, "a .png or .csv file")
    if trained.text is not None:
        return _sentences(args, trained)
    kind = picture_or_table(args.out, len(trained.data.event_shape) == 1, True)
    settings = data_overrides(args)
    x, y = trained.load_inputs(settings.pop("source", None), None, **settings)
    if args.index is not None and not 0 <= args.index < len(x):
        raise UserError(f"--index {args.index}: the inputs are numbered 0 to {len(x) - 1}")
    kl = trained.kl_per_dimension(x[:KL_EXAMPLES], None if y is None else y[:KL_EXAMPLES])
    ranked = latent_paths.by_kl(kl) if args.all else latent_paths.active_dimensions(kl)
    dims = args.dims or ranked or latent_paths.by_kl(kl)[:1]
    base = None if args.index is None else np.asarray(x[args.index : args.index + 1])
    own = None if args.index is None or y is None else np.asarray(y[args.index : args.index + 1])
    label = trained.labels.index(args.label)
    rows = trained.traverse(base, list(dims), args.steps, args.span, args.posterior_scale, labels=own, label=label)
    if kind == "csv":
        offsets = np.linspace(-args.span, args.span, args.steps)
        keys = {"dim": np.repeat(dims, args.steps)[:, None], "offset": np.tile(offsets, len(dims))[:, None]}
        atomic_write_text(args.out, latent_csv(rows, trained.data, keys))
    else:
        where = "the prior's mean" if base is None else f"input {args.index}'s posterior mean"
        where += " (steps of its posterior σ)" if args.posterior_scale else ""
        png = traversal_png(rows, trained.data, list(dims), kl, latent_paths.ACTIVE_KL, args.span, where)
        atomic_write_bytes(args.out, png)
    print(f"wrote a traversal of {len(dims)} dimensions to {args.out}")
    return 0


def _sentences(args: argparse.Namespace, trained) -> int:  # trained: TrainedVAE of a text run
    from vaekit.errors import UserError
    from vaekit.model import latent_paths

    if args.label is not None:
        raise UserError(f"--label {args.label}: needs a conditional VAE; a text run has no labels")
    if args.text is not None and (len(args.text) != 1 or args.index is not None):
        raise UserError("--text: give one line to sweep around (or --index I of the test split), not both or more")
    lines = input_lines(args, trained, typed=False)  # the KL's lines, and --index's
    kl = trained.text.kl_per_dimension(lines[:KL_EXAMPLES])
    ranked = latent_paths.by_kl(kl) if args.all else latent_paths.active_dimensions(kl)
    dims = list(args.dims or ranked or latent_paths.by_kl(kl)[:1])
    wrong = [d for d in dims if not 0 <= d < trained.model.latent_dim]
    if wrong:
        raise UserError(f"--dims {','.join(map(str, dims))}: this run's latent dimensions are 0 to "
                        f"{trained.model.latent_dim - 1}")
    line = args.text[0] if args.text else None
    if args.index is not None:
        if not 0 <= args.index < len(lines):
            raise UserError(f"--index {args.index}: the inputs are numbered 0 to {len(lines) - 1}")
        line = lines[args.index]
    sweeps = trained.text.traverse(dims, args.steps, args.span, line, args.posterior_scale)
    offsets = [-args.span + 2 * args.span * step / (args.steps - 1) for step in range(args.steps)]
    text_lines, records = [], []
    for dim, sentences in zip(dims, sweeps):
        text_lines += [f"z{dim} {offset:+.2f}  {sentence}" for offset, sentence in zip(offsets, sentences)] + [""]
        records += [{"dim": dim, "kl": float(kl[dim]), "offset": offset, "sentence": sentence}
                    for offset, sentence in zip(offsets, sentences)]
    write_lines(args.out, text_lines[:-1], records)
    if args.out is not None:
        print(f"wrote a traversal of {len(dims)} dimensions to {args.out}")
    return 0
