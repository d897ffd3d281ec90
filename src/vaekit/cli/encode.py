"""vaekit encode: the posterior q(z|x) = N(μ, σ²) of every input, saved as .npz."""

from __future__ import annotations

import argparse
import io
import json

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_json_flag,
    add_split_flag,
    data_overrides,
    refuse_existing,
)

EXAMPLES = """\
examples:
  vaekit encode runs/fmnist --out codes.npz                      the run's own test split
  vaekit encode runs/fmnist --data fashion-mnist --split all --out codes.npz
  python -c "import numpy as np; c = np.load('codes.npz'); print(c['loc'].shape, c['scale'].shape)"

The .npz holds `loc` (N, D) = μ(x), `scale` (N, D) = σ(x), and `labels` (N,) when the data has them."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode", help="encode data to posterior means and standard deviations", epilog=EXAMPLES,
        description="Write μ(x) and σ(x) of q(z|x) for every input to a .npz file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `vaekit train`")
    add_data_source_flags(parser)
    add_split_flag(parser)
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_json_flag(parser, "what was written")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.errors import UserError
    from vaekit.runs.files import atomic_write_bytes
    from vaekit.runs.trained import TrainedVAE

    if not args.out.lower().endswith(".npz"):
        raise UserError(f"{args.out}: encode writes a .npz file; name --out like codes.npz")
    refuse_existing(args.out, args.overwrite)
    trained = TrainedVAE(args.run_dir, device=args.device)
    settings = data_overrides(args)
    x, labels = trained.load_inputs(settings.pop("source", None), args.split, **settings)
    loc, scale = trained.encode(x)
    arrays = {"loc": loc, "scale": scale, **({"labels": labels} if labels is not None else {})}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(args.out, buffer.getvalue())
    if args.json:
        print(json.dumps({"out": args.out, "count": len(x), "latent_dim": loc.shape[1], "labels": labels is not None}))
    else:
        print(f"wrote loc and scale {loc.shape}{' and labels' if labels is not None else ''} to {args.out}")
    return 0
