"""vaekit encode: the posterior q(z|x) = N(μ, σ²) of every input, saved as .npz."""

from __future__ import annotations

import argparse
import io
import json
from typing import TYPE_CHECKING

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_json_flag,
    add_out_flag,
    add_run_flags,
    add_split_flag,
    data_overrides,
)
from vaekit.cli.text_output import add_text_flag, check_out, input_lines, write_lines

if TYPE_CHECKING:
    import numpy as np

    from vaekit.data.source import Split

EXAMPLES = """\
examples:
  vaekit encode runs/fmnist --out codes.npz                      the run's own test split
  vaekit encode runs/fmnist --data fashion-mnist --split all --out codes.npz
  python -c "import numpy as np; c = np.load('codes.npz'); print(c['loc'].shape, c['scale'].shape)"

The .npz holds `loc` (N, D) = μ(x), `scale` (N, D) = σ(x), `rows` (N,) each input's row in the source
(a source's own test rows follow its training rows), `names` (N,) each file's path relative to an image
folder, and `labels` (N,) with `class_names` (label -> name) when the data has them. A text run encodes
lines (--text, --data or its test split): the .npz holds them as `lines`, a .jsonl one object per line
{"line", "loc", "scale"}, and without --out those objects go to stdout.

  vaekit encode runs/text --text "the cat sat ." --text "a dog ran ."    codes on stdout"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode", help="encode data to posterior means and standard deviations", epilog=EXAMPLES,
        description="Write μ(x) and σ(x) of q(z|x) for every input to a .npz file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    add_data_source_flags(parser)
    add_split_flag(parser)
    add_out_flag(parser, "output .npz file (a text run: also .jsonl)", unset="stdout, for a text run")
    add_text_flag(parser, "a line to encode")
    add_json_flag(parser, "what was written")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from vaekit.errors import UserError
    from vaekit.runs.files import atomic_write_bytes
    from vaekit.runs.trained import TrainedVAE

    trained = TrainedVAE(args.run_dir, device=args.device)
    text = trained.text is not None
    if not text and args.out is not None and not args.out.lower().endswith(".npz"):
        raise UserError(f"{args.out}: encode writes a .npz file; name --out like codes.npz")
    check_out(args, text, "a .npz file like codes.npz", text_suffixes=(".npz", ".jsonl"))
    if text:
        return _lines(args, trained)
    settings = data_overrides(args)
    chosen, class_names = trained.load_split(settings.pop("source", None), args.split, **settings)
    loc, scale = trained.encode(chosen.x, chosen.y)  # q(z|x, y) of a conditional run
    arrays = {"loc": loc, "scale": scale, **traced_to_source(chosen, class_names)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(args.out, buffer.getvalue())
    extras = [key for key in ("names", "labels", "class_names") if key in arrays]
    if args.json:
        print(json.dumps({"out": args.out, "count": len(loc), "latent_dim": loc.shape[1],
                          "labels": "labels" in arrays, "arrays": sorted(arrays)}))
    else:
        print(f"wrote loc and scale {loc.shape}, rows{''.join(f', {key}' for key in extras)} to {args.out}")
    return 0


def _lines(args: argparse.Namespace, trained) -> int:  # trained: TrainedVAE of a text run
    import numpy as np

    from vaekit.runs.files import atomic_write_bytes

    lines = input_lines(args, trained)
    loc, scale = trained.text.encode(lines)
    if args.out is None or args.out.lower().endswith(".jsonl"):
        records = [{"line": line, "loc": mu.tolist(), "scale": sigma.tolist()}
                   for line, mu, sigma in zip(lines, loc, scale)]
        write_lines(args.out, [json.dumps(record, ensure_ascii=False) for record in records], records)
    else:
        buffer = io.BytesIO()
        np.savez(buffer, loc=loc, scale=scale, lines=np.array(lines, dtype=str))  # unicode: loads without pickle
        atomic_write_bytes(args.out, buffer.getvalue())
    if args.out is not None:
        print(f"wrote loc and scale {loc.shape} of {len(lines)} lines to {args.out}")
    return 0


def traced_to_source(chosen: Split, class_names: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    """What ties each code to its input: the source's row numbers, file names, labels and class names."""
    import numpy as np

    rows = np.arange(len(chosen)) if chosen.rows is None else chosen.rows
    arrays = {"rows": np.asarray(rows, dtype=np.int64)}
    if chosen.names is not None:
        arrays["names"] = np.array(chosen.names, dtype=str)  # a unicode array: loads without pickle
    if chosen.y is not None:
        arrays["labels"] = chosen.y
        if class_names is not None:
            arrays["class_names"] = np.array(class_names, dtype=str)
    return arrays
