"""vaekit latents: a scatter of the posterior means μ(x), coloured by label."""

from __future__ import annotations

import argparse

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_out_flag,
    add_run_flags,
    add_seed_flag,
    add_split_flag,
    data_overrides,
    refuse_existing,
)

EXAMPLES = """\
examples:
  vaekit latents runs/fmnist --out latents.png                 the test split, PCA when D > 2
  vaekit latents runs/fmnist --method tsne --n 2000 --out tsne.png

Each point is an input's μ(x). With D = 2 the axes are z0 and z1; with more, the two principal
components (pca) or a t-SNE embedding (tsne, slower), both from scikit-learn. Without labels, one
colour and a note."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "latents", help="scatter the codes of the data, coloured by label", epilog=EXAMPLES,
        description="Scatter the posterior means of inputs in two dimensions, coloured by their labels.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    add_data_source_flags(parser)
    add_split_flag(parser)
    parser.add_argument("--n", type=int, default=5000, help="at most N inputs (default 5000)")
    parser.add_argument("--method", choices=["pca", "tsne"], default="pca", help="for D > 2 (default pca)")
    add_seed_flag(parser, "t-SNE")
    add_out_flag(parser, "output picture (.png)")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.errors import UserError
    from vaekit.reporting.latent_pictures import latent_scatter_png
    from vaekit.runs.files import atomic_write_bytes
    from vaekit.runs.trained import TrainedVAE

    if args.n < 2:
        raise UserError(f"--n {args.n}: a scatter needs at least 2 inputs")
    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out {args.out}: a scatter is a picture; name --out like latents.png")
    refuse_existing(args.out, args.overwrite)
    trained = TrainedVAE(args.run_dir, device=args.device)
    settings = data_overrides(args)
    x, labels = trained.load_inputs(settings.pop("source", None), args.split, **settings)
    x, labels = x[: args.n], None if labels is None else labels[: args.n]
    codes, axes = trained.latents(x, args.method, args.seed)
    title = f"posterior means of {len(codes)} inputs ({trained.data.description})"
    atomic_write_bytes(args.out, latent_scatter_png(codes, labels, trained.data.class_names, axes, title))
    note = "" if labels is not None else " (no labels: one colour)"
    print(f"wrote a scatter of {len(codes)} codes to {args.out}{note}")
    return 0
