"""vaekit manifold: decode a grid over two latent dimensions (Kingma & Welling's Figure 4)."""

from __future__ import annotations

import argparse

from vaekit.cli.options import (
    add_debug_flag,
    add_decode_label_flag,
    add_out_flag,
    add_run_flags,
    parse_int_list,
    refuse_existing,
)

EXAMPLES = """\
examples:
  vaekit manifold runs/fmnist --out manifold.png            the two dimensions of most KL, 20 x 20
  vaekit manifold runs/fmnist --dims 3,5 --grid 15 --out m.png

The grid runs over equal steps of the prior's quantiles (0.05 to 0.95) through the inverse Gaussian
CDF, the other dimensions at 0; with a 2-dimensional latent space it is the paper's picture."""
KL_EXAMPLES = 2000  # test inputs to rank the dimensions by KL over


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manifold", help="decode a grid over two latent dimensions", epilog=EXAMPLES,
        description="Decode z on a grid through the inverse Gaussian CDF over two latent dimensions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    parser.add_argument("--grid", type=int, default=20, help="codes per side (default 20)")
    parser.add_argument("--dims", type=parse_int_list, metavar="A,B", help="the two dimensions (default: most KL)")
    add_decode_label_flag(parser, "the first class")
    add_out_flag(parser, "output picture (.png)")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    from vaekit.errors import UserError
    from vaekit.model import latent_paths
    from vaekit.reporting.latent_pictures import manifold_png
    from vaekit.reporting.outputs import drawable
    from vaekit.runs.files import atomic_write_bytes
    from vaekit.runs.trained import TrainedVAE

    if args.grid < 2 or args.grid > 60:
        raise UserError(f"--grid {args.grid}: use 2 to 60 codes per side")
    if args.dims is not None and len(args.dims) != 2:
        raise UserError(f"--dims {args.dims}: name exactly two dimensions, such as --dims 0,1")
    refuse_existing(args.out, args.overwrite)
    trained = TrainedVAE(args.run_dir, device=args.device)
    if trained.text is not None:
        raise UserError(f"{args.run_dir}: a text run's codes decode to sentences, which a manifold picture cannot "
                        "show; `vaekit traverse` and `vaekit interpolate` print them")
    if not drawable(trained.data):
        raise UserError(f"{args.run_dir}: this run models {trained.data.kind} data, which a manifold picture cannot "
                        "show; `vaekit traverse` writes its sweeps as a CSV or line plots")
    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out {args.out}: a manifold is a picture; name --out like manifold.png")
    if args.dims is None:
        x, y = trained.load_inputs()
        kl = trained.kl_per_dimension(x[:KL_EXAMPLES], None if y is None else y[:KL_EXAMPLES])
        dims = tuple(sorted(latent_paths.by_kl(kl)[:2]))
    else:
        dims = tuple(args.dims)
    images = trained.manifold(args.grid, dims, trained.labels.index(args.label))
    atomic_write_bytes(args.out, manifold_png(images, trained.data, dims))
    print(f"wrote a {args.grid} x {args.grid} manifold over z{dims[0]} and z{dims[1]} to {args.out}")
    return 0
