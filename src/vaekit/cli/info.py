"""vaekit info: a run's settings, data and final figures."""

from __future__ import annotations

import argparse
import json

from vaekit.cli.options import add_debug_flag, add_json_flag


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="show a run's settings and final figures",
        description="Print the settings, the data and the figures (nats per example) of a run.",
        epilog="example:\n  vaekit info runs/digits\n  vaekit info runs/digits --json | python -m json.tool",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `vaekit train`")
    add_json_flag(parser, "settings, data and figures")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vaekit.runs.directory import read_config, read_evaluations, read_metrics, read_results

    config, data = read_config(args.run_dir)
    metrics = read_metrics(args.run_dir)
    results = read_results(args.run_dir)
    evaluations = read_evaluations(args.run_dir)
    if args.json:
        payload = {"config": config.to_dict(), "data": asdict(data), "results": results,
                   "last_epoch": metrics[-1] if metrics else None, "evaluations": evaluations}
        print(json.dumps(payload))
        return 0
    model, train = config.model, config.train
    print(f"run        {args.run_dir}")
    print(f"data       {data.description}: {data.kind}, shape {data.event_shape}, "
          f"{data.counts['train']} train / {data.counts['validation']} validation / {data.counts['test']} test")
    if data.kind == "text":
        codec = data.codec
        vocabulary = len(codec.get("tokenizer", {}).get("model", {}).get("vocab", {}))
        network = ("language model (the decoder without z)" if model.language_model else "sentence VAE") + (
            f": GRU {model.rnn_size}, embedding {model.embedding_dim}, latent {model.latent_dim}, word dropout "
            f"{model.word_dropout:g}; {codec.get('tokens')} tokens, vocabulary {vocabulary}, max length "
            f"{codec.get('max_length')}")
        print(f"model      {network}, categorical likelihood")
    else:
        print(f"model      {model.architecture} hidden {list(model.hidden_sizes)} latent {model.latent_dim}, "
              f"{data.likelihood} likelihood")
    average = f"weights averaged (decay {train.weight_average:g})" if train.weight_average else "raw weights kept"
    print(f"training   {train.objective}, Adam lr {train.learning_rate:g} beta2 {train.adam_beta2:g}, "
          f"batch {train.batch_size}, epochs {train.epochs}, seed {train.seed}, binarize {config.data.binarize}, "
          f"{average}")
    if metrics:
        last = metrics[-1]
        line = f"epoch {last['epoch']}: train -ELBO {-last['train_elbo']:.2f}"
        if "val_elbo" in last:
            line += f", validation -ELBO {-last['val_elbo']:.2f}"
        print(f"progress   {line}")
    if results:
        # Not `vaekit evaluate`'s -ELBO, which comes from its K importance samples: say which this is.
        samples = f"from K = {train.iwae_samples} samples" if "test_iwae" in results else "a one-sample estimate"
        weights = "averaged weights" if train.weight_average else "weights"
        print(f"test       -ELBO {-results['test_elbo']:.2f} nats "
              f"(reconstruction {-results['test_reconstruction']:.2f}, KL {results['test_kl']:.2f}) "
              f"with the best {weights} of epoch {results['best_epoch']} "
              f"({samples} on the test split, written at the end of training)")
    else:
        print("test       not yet: training has not finished (vaekit train --resume continues it)")
    _print_evaluations(args.run_dir, evaluations)
    return 0


def _print_evaluations(run_dir: str, evaluations: dict) -> None:
    """One line per saved `vaekit evaluate`: NLL, bits/dim, active units, K."""
    if not evaluations:
        return
    from vaekit.runs.directory import weights_digest

    current = weights_digest(run_dir)
    for key, figures in evaluations.items():
        earlier = "" if figures.get("weights") in (None, current) else "  [weights since changed by a resume]"
        per = (f"{figures['nll_per_token']:.4f} per token, perplexity {figures['perplexity']:.2f}"
               if "perplexity" in figures else f"{figures['bits_per_dim']:.4f} bits/dim")
        print(f"evaluated  {key}: NLL {figures['nll']:.2f} nats ({per}), "
              f"active units {figures['active_units']} of {figures['latent_dim']}, "
              f"K = {figures['importance_samples']}, {figures['examples']} examples{earlier}")
