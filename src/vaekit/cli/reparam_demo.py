"""vaekit reparam-demo: the reparameterization trick on E[x²], x ~ N(θ, 1), against closed forms."""

from __future__ import annotations

import argparse
import json

from vaekit.cli.options import (
    add_debug_flag,
    add_json_flag,
    add_out_flag,
    add_overwrite_flag,
    add_seed_flag,
    refuse_existing,
)

EXAMPLES = """\
examples:
  vaekit reparam-demo                                  θ = 0, 1, 2, 3; figures in reparam-demo/
  vaekit reparam-demo --theta-values -2 0 2 5 --samples 1000000 --out figures/
  vaekit reparam-demo --json | python -m json.tool     the table and the SGD summary for scripts

Two unbiased estimators of d/dθ E[x²] = 2θ from one draw ε ~ N(0, 1):
  score function  x²·(x − θ), x = θ + ε     variance θ⁴ + 14θ² + 15
  pathwise        2(θ + ε)                   variance 4
The table sets each estimator's empirical mean and variance beside 2θ and the closed form, with
z = (empirical − closed form) / standard error (the variance's from the exact fourth moment).
SGD then starts both from --start with the same step size and the same ε.
--out receives estimator_variance.png, sgd_trajectories.png and reparam_demo.json."""

OUTPUTS = ("estimator_variance.png", "sgd_trajectories.png", "reparam_demo.json")
NAMES = {"score_function": "score function", "pathwise": "pathwise"}


def _float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number such as 2 or -0.5") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reparam-demo", help="score-function versus pathwise gradients on E[x²], against closed forms",
        description="Measure both gradient estimators of the reparameterization trick's worked example\n"
                    "against closed forms, and run SGD with each.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--theta-values", type=_float_list, nargs="+", metavar="θ",
                        help="where to compare the estimators (default 0 1 2 3; commas also work)")
    parser.add_argument("--samples", type=int, default=100_000, help="draws per θ (default 100000)")
    parser.add_argument("--start", type=float, default=3.0, help="SGD's starting θ (default 3)")
    parser.add_argument("--learning-rate", type=float, default=0.02, help="SGD step size, in (0, 1) (default 0.02)")
    parser.add_argument("--steps", type=int, default=500, help="SGD steps (default 500)")
    parser.add_argument("--repeats", type=int, default=20, help="SGD runs per estimator (default 20)")
    add_seed_flag(parser, "every draw")
    add_out_flag(parser, "folder for the figures and JSON", "reparam-demo", metavar="DIR")
    add_overwrite_flag(parser, "figures already in --out")
    add_json_flag(parser, "the table and the SGD summary")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaekit.errors import UserError
    from vaekit.runs.files import atomic_write_text
    from vaekit.studies.reparam import DemoSettings, run_demo, save_sgd_figure, save_variance_figure

    theta_values = DemoSettings.theta_values
    if args.theta_values:  # each value of --theta-values may itself be a comma list
        theta_values = tuple(theta for group in args.theta_values for theta in group)
    settings = DemoSettings(theta_values=theta_values, samples=args.samples, start=args.start,
                            learning_rate=args.learning_rate, steps=args.steps, repeats=args.repeats, seed=args.seed)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in OUTPUTS]
    for path in paths:
        refuse_existing(str(path), args.overwrite)
    result = run_demo(settings)
    save_variance_figure(result, paths[0])
    save_sgd_figure(result, paths[1])
    summary = {**result.to_dict(), "figures": [str(p) for p in paths[:2]]}
    atomic_write_text(paths[2], json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
        return 0
    _print_table(result)
    _print_sgd(result)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _print_table(result) -> None:
    print(f"gradient of E[x²], x ~ N(θ, 1), from {result.settings.samples} draws per θ "
          "(z: distance from the closed form in standard errors)")
    print(f"{'θ':>6}  {'estimator':<15} {'mean':>9} {'2θ':>8} {'z':>6}  "
          f"{'variance':>10} {'closed form':>11} {'z':>6}")
    for row in result.table:
        print(f"{row.theta:>6g}  {NAMES[row.estimator]:<15} {row.mean:>9.4f} {row.expected_mean:>8.3f} "
              f"{row.mean_z:>6.2f}  {row.variance:>10.4f} {row.expected_variance:>11.4g} {row.variance_z:>6.2f}")


def _print_sgd(result) -> None:
    from vaekit.studies.reparam import pathwise_final_std

    settings = result.settings
    print(f"\nSGD from θ = {settings.start:g}, step {settings.learning_rate:g}, {settings.steps} steps, "
          f"{settings.repeats} runs per estimator on the same ε:")
    for summary in result.sgd:
        note = f" (closed form {pathwise_final_std(settings):.4f})" if summary.estimator == "pathwise" else ""
        diverged = f", {summary.diverged} diverged" if summary.diverged else ""
        print(f"  {NAMES[summary.estimator]:<15} final mean |θ| {summary.mean_abs_final:.4f}, "
              f"spread (std over runs) {summary.final_std:.4f}{note}{diverged}")
