"""vaekit evaluate: the figures papers print — importance-sampled NLL, ELBO, bits/dim, active units."""

from __future__ import annotations

import argparse
import json

from vaekit.cli.options import (
    add_data_source_flags,
    add_debug_flag,
    add_json_flag,
    add_run_flags,
    add_seed_flag,
    add_split_flag,
    data_overrides,
)

EXAMPLES = """\
examples:
  vaekit evaluate runs/fmnist-bin                             test NLL with K = 5000, as papers report it
  vaekit evaluate runs/fmnist-bin --importance-samples 100 --limit 1000      a quick look
  vaekit evaluate runs/fmnist-bin --split validation --seed 1 --json

NLL = −log p(x), estimated as −log (1/K) Σₖ p(x, zₖ)/q(zₖ|x) with zₖ ~ q(z|x): nats per example,
lower is better; in expectation the estimate tightens as K grows. Bits/dim = NLL / (dimensions · ln 2).
A latent unit is active when its posterior mean varies over the data by more than 0.01. For a text run
the NLL is per sentence, and per token (each sentence's </s> counted) with the perplexity exp(NLL per
token); a language-model run (--language-model) has KL 0, and its NLL is exact for any K.
The same --seed gives the same figures. A run trained with dynamic binarization is evaluated on
its validation and test images binarized once (fixed by the split seed), as the papers do."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="importance-sampled log-likelihood, ELBO and latent usage of a run", epilog=EXAMPLES,
        description="Estimate the test NLL by importance sampling and report the ELBO, its terms, bits per "
                    "dimension, active units and the KL of each latent dimension (nats per example).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser, writes=False)
    add_data_source_flags(parser)
    add_split_flag(parser)
    parser.add_argument("--importance-samples", type=int, default=5000, metavar="K",
                        help="samples of q(z|x) per example (default 5000, as published)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="only the first N examples, a quick look (default: all of them)")
    add_seed_flag(parser, "the importance samples")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json_flag(parser, "the figures")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vaekit.errors import UserError
    from vaekit.runs.trained import TrainedVAE
    from vaekit.runtime.cpu import flush_denormals, keep_freed_memory
    from vaekit.runtime.device import resolve_device
    from vaekit.runtime.world import joined_world, rank_device

    if args.importance_samples < 1:
        raise UserError(
            f"--importance-samples {args.importance_samples}: K must be at least 1 (5000 for published numbers)"
        )
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: ask for at least one example")
    keep_freed_memory()
    with joined_world() as world:  # [distributed] under torchrun, each rank estimates some of the batches
        device = rank_device(resolve_device(args.device), world)
        trained = TrainedVAE(args.run_dir, device=str(device))
        # flush_denormals: softplus of very negative logits (docs/performance.md); nothing of the figures.
        # (--threads is set around the whole command by vaekit.cli.main.)
        with flush_denormals():
            return _evaluate(args, trained, world)


def _evaluate(args: argparse.Namespace, trained, world) -> int:  # trained: TrainedVAE, world: World
    from tqdm.auto import tqdm

    from vaekit.errors import UserError
    from vaekit.evaluation.importance import evaluate

    settings = data_overrides(args)
    source = settings.pop("source", None)
    x, y = trained.load_inputs(source, args.split, **settings)
    x, y = x[: args.limit], None if y is None else y[: args.limit]
    if trained.conditional and y is None:
        raise UserError(f"{source or trained.data.description}: {trained.run_dir} is a conditional VAE, whose NLL "
                        "is -log p(x|y): the data needs labels")
    if args.split in ("train", "all") and trained.config.data.binarize == "dynamic":
        x = _binarize_once(x, args.seed)
    quiet = args.quiet or not world.is_main
    bar = tqdm(desc="importance sampling", unit="chunk", disable=True if quiet else None, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        figures = evaluate(trained.model, x, trained.codec, args.importance_samples, args.seed, progress=progress,
                           world=world, labels=y if trained.conditional else None)
    finally:
        bar.close()
    if not world.is_main:
        return 0  # [distributed] rank 0 prints the figures
    split = args.split or ("test" if source is None else "default")
    saved_as = _save(args, trained, figures, source, split)
    if args.json:
        print(json.dumps({"run_dir": args.run_dir, "data": source or trained.data.description, "split": split,
                          **figures.to_dict()}))
    else:
        _print_figures(figures, f"{source or trained.data.description}, {split} split", trained.conditional)
        if saved_as:
            print(f"saved         as \"{saved_as}\" in {trained.run_dir / 'evaluation.json'} (info, report)")
    return 0


def _save(args: argparse.Namespace, trained, figures, source: str | None, split: str) -> str | None:
    """Keep the figures in the run's evaluation.json (beside earlier ones) for `info` and the report; the key
    they are saved under, or None where the run cannot be written to."""
    import logging
    from datetime import datetime, timezone

    from vaekit.runs.directory import EVALUATION_FILE, save_evaluation, weights_digest

    examples = f"{split} (first {figures.examples})" if args.limit is not None else split
    key = ", ".join([*([source] if source else []), examples, f"K={figures.importance_samples}"])
    record = {"data": source or trained.data.description, "split": split, **figures.to_dict(),
              "weights": weights_digest(trained.run_dir),
              "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        save_evaluation(trained.run_dir, key, record)
    except OSError as error:  # a read-only run still prints its figures
        logging.getLogger(__name__).warning("could not save the figures in %s: %s",
                                            trained.run_dir / EVALUATION_FILE, error)
        return None
    return key


def _binarize_once(x, seed: int):
    """Training images of a dynamically binarized run are grey; evaluate one draw, fixed by --seed."""
    import numpy as np

    scale = 255 if x.dtype == np.uint8 else 1
    drawn = np.random.default_rng(seed).random(x.shape, dtype=np.float32) * scale < x
    return (drawn * scale).astype(x.dtype)


def _print_figures(figures, what: str, conditional: bool = False) -> None:  # figures: importance.Evaluation
    kl = "  ".join(f"{value:.2f}" for value in figures.kl_per_dim)
    of = "  -log p(x|y), given each input's label (a conditional run)" if conditional else ""
    print(f"{what}: {figures.examples} examples, K = {figures.importance_samples} importance samples, "
          f"seed {figures.seed}")
    if figures.tokens is not None:  # text: per sentence, per token, and the perplexity
        print(f"NLL           {figures.nll:.2f} nats per sentence; {figures.nll_per_token:.4f} per token "
              f"({figures.tokens} tokens, </s> included): perplexity {figures.perplexity:.2f}")
    else:
        print(f"NLL           {figures.nll:.2f} nats  ({figures.bits_per_dim:.4f} bits/dim){of}")
    print(f"-ELBO         {-figures.elbo:.2f} nats  (reconstruction {-figures.reconstruction:.2f}, "
          f"KL {figures.kl:.2f}; from the same K = {figures.importance_samples} samples as the NLL)")
    print(f"active units  {figures.active_units} of {figures.latent_dim}  (posterior-mean variance > 0.01)")
    print(f"KL per dim    {kl}")
    print(f"time          {figures.seconds:.1f} s")
