"""vaekit gradient-variance: score-function versus reparameterized gradients of a real VAE's encoder."""

from __future__ import annotations

import argparse
import json

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_device_flag,
    add_json_flag,
    add_out_flag,
    add_overwrite_flag,
    add_seed_flag,
    add_threads_flag,
    data_overrides,
    refuse_existing,
)

EXAMPLES = """\
examples:
  vaekit gradient-variance runs/digits                   a trained run, a minibatch of its test split
  vaekit gradient-variance --data digits                 a freshly initialized model instead of a run
  vaekit gradient-variance runs/digits --kl analytic --draws 1000 --out gv/
  vaekit gradient-variance runs/digits --json | python -m json.tool

For one fixed minibatch and fixed weights, each estimator's gradient of the batch-averaged ELBO with
respect to the encoder's parameters φ is drawn --draws times (one z per example per draw):
  pathwise         ∇φ f(μ + σ·ε)                       z = μ + σ·ε carries the gradient
  score function   ∇φ [⊥f·log q(⊥z|x) + f(⊥z)]         ⊥ = stop-gradient: none passes through z
with f = log p(x|z) + log p(z) − log q(z|x) (--kl sampled, the default), or f = log p(x|z) and the
closed-form −KL(q‖p) added to both (--kl analytic, the form `vaekit train` uses). Reported: the
trace of each estimator's covariance (sum of per-parameter variances), their ratio, per encoder
layer and in total, and z: the difference of their means along the mean gradient in standard
errors (|z| < 3 or so when both are unbiased). --out receives gradient_variance.png and .json."""

OUTPUTS = ("gradient_variance.png", "gradient_variance.json")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gradient-variance", help="how much noisier the score-function gradient is than the reparameterized one",
        description="Measure the variance of the encoder's ELBO gradient under the score-function and the\n"
                    "pathwise (reparameterized) estimator, for a trained run or a freshly initialized model.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                        help="a directory written by `vaekit train` (or pass --data for a fresh model)")
    add_data_source_flags(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="examples in the fixed minibatch (default 64)")
    parser.add_argument("--draws", type=int, default=400, help="gradient draws per estimator (default 400)")
    parser.add_argument("--kl", choices=["sampled", "analytic"], default="sampled",
                        help="KL term sampled inside f (default) or in closed form")
    add_seed_flag(parser, "the minibatch, ε and a fresh model's weights")
    add_device_flag(parser)
    add_threads_flag(parser)
    add_out_flag(parser, "folder for the figure and JSON", "gradient-variance", metavar="DIR")
    add_overwrite_flag(parser, "outputs already in --out")
    add_json_flag(parser, "the per-layer variances and ratios")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaekit.config import RunConfig
    from vaekit.errors import UserError
    from vaekit.runs.files import atomic_write_text
    from vaekit.runtime.device import resolve_device
    from vaekit.studies import gradient_variance as gv

    overrides = data_overrides(args)
    if args.run_dir and overrides:
        raise UserError("pass RUN_DIR (a trained run, measured on its own data) or --data (a fresh model), not both")
    if not args.run_dir and "source" not in overrides:
        raise UserError("pass RUN_DIR (a directory written by `vaekit train`) or --data SOURCE for a fresh model")
    settings = gv.GradientVarianceSettings(batch_size=args.batch_size, draws=args.draws, kl=args.kl, seed=args.seed)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    device = resolve_device(args.device)
    if args.run_dir:
        model, x, description = gv.trained_model_and_batch(Path(args.run_dir), settings, device)
    else:
        config = RunConfig().with_overrides({"data": overrides})
        model, x, description = gv.fresh_model_and_batch(config, settings, device)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in OUTPUTS]
    for path in paths:
        refuse_existing(str(path), args.overwrite)
    report = gv.measure_gradient_variance(model, x, settings, description)
    gv.save_layer_figure(report, paths[0])
    summary = {**report.to_dict(), "figure": str(paths[0])}
    atomic_write_text(paths[1], json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
        return 0
    _print_report(report)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _print_report(report) -> None:
    settings = report.settings
    print(f"{report.description}: encoder gradient of the ELBO, batch {settings.batch_size}, "
          f"{settings.draws} draws per estimator, KL {settings.kl}")
    rows = [*report.layers, report.total]
    width = max(len(f"{row.name} ({row.description})") for row in rows)
    print(f"{'layer':<{width}} {'parameters':>10} {'score fn var':>13} {'pathwise var':>13} {'ratio':>10} {'z':>6}")
    for row in rows:
        print(f"{row.name + ' (' + row.description + ')':<{width}} {row.size:>10} {row.score_function_variance:>13.4g} "
              f"{row.pathwise_variance:>13.4g} {row.ratio:>10.4g} {row.mean_difference_z:>6.2f}")
    print("(variance: trace of the covariance of ĝ; z: difference of the means along the mean gradient, "
          "in standard errors)")
