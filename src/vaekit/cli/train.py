"""vaekit train: fit a VAE to a data source and write a run directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vaekit.cli.options import (
    DATA_FLAG_FIELDS,
    THREADS_KEYWORDS,
    add_data_source_flags,
    add_debug_flag,
    add_json_flag,
    add_out_flag,
    add_overwrite_flag,
    data_overrides,
    device_keywords,
    parse_int_list,
)
from vaekit.config import (
    ACTIVATIONS,
    ARCHITECTURES,
    BINARIZATIONS,
    GAUSSIAN_VARIANCES,
    LIKELIHOODS,
    LR_SCHEDULES,
    OBJECTIVES,
    PRECISIONS,
    STEPS,
    RunConfig,
    load_toml,
)

if TYPE_CHECKING:
    from vaekit.runtime.world import World

EXAMPLES = """\
examples:
  vaekit train --data digits --out runs/digits
  vaekit train --data fashion-mnist --out runs/fmnist --epochs 10 --hidden-sizes 400 --latent-dim 20
  vaekit train --config configs/fashion-mnist-binarized.toml --out runs/fmnist-bin
  vaekit train --data photos/ --image-size 32 --architecture conv --out runs/photos
  vaekit train --resume runs/fmnist --epochs 20      continue a run exactly where it stopped
  vaekit train --data sentences.txt --out runs/text       a sentence VAE (one sentence per line)
  vaekit train --data sentences.txt --language-model --out runs/text-lm   its baseline: the decoder without z
  vaekit train --data huge-folder/ --stream --workers 4 --out runs/huge   decode from disk, batch by batch
  torchrun --nproc-per-node 4 -m vaekit train --data fashion-mnist --out runs/fmnist4
                                                    one run on 4 GPUs (or CPU processes); --batch-size is global

A run directory holds config.json, model.safetensors (best weights), checkpoint.safetensors (for
--resume), metrics.jsonl (one line per epoch), results.json (test figures), samples.png,
reconstructions.png and loss.png. Figures are nats per example; -ELBO is the loss."""

# flag -> (config section, field, argparse keywords). Flags override the --config file.
SETTINGS: dict[str, tuple[str, str, dict]] = {
    "--latent-dim": ("model", "latent_dim", {"type": int, "help": "size D of the latent code (default 20)"}),
    "--architecture": ("model", "architecture", {"choices": ARCHITECTURES,
                      "help": "auto (default: rnn for text, conv for sound, mlp for anything else), mlp, conv (images, "
                              "sound) or rnn (text)"}),
    "--hidden-sizes": ("model", "hidden_sizes", {"type": parse_int_list, "metavar": "N,N",
                                                 "help": "hidden layer widths, e.g. 300,300 (default 400)"}),
    "--activation": ("model", "activation", {
        "choices": ACTIVATIONS, "help": "of the hidden layers; gated: (Wx + b) * sigmoid(Vx + c) (default relu)"}),
    "--conv-channels": ("model", "conv_channels", {"type": parse_int_list, "metavar": "N,N",
                                                   "help": "channels per conv layer (default 32,64)"}),
    "--likelihood": ("model", "likelihood", {"choices": LIKELIHOODS,
                                             "help": "p(x|z); auto = bernoulli for [0,1] pixels, else gaussian "
                                                     "(default auto)"}),
    "--gaussian-variance": ("model", "gaussian_variance", {
        "choices": GAUSSIAN_VARIANCES,
        "help": "a Gaussian p(x|z)'s learned variance: one per data dimension or one shared (default per-dimension)"}),
    "--conditional": ("model", "conditional", {
        "action": "store_true", "default": None,
        "help": "a conditional VAE of the data's labels, q(z|x, y) and p(x|z, y): then `sample --label` and "
                "`convert` (default off)"}),
    "--embedding-dim": ("model", "embedding_dim", {"type": int, "metavar": "N",
                                                   "help": "text: size of the token embeddings (default 128)"}),
    "--rnn-size": ("model", "rnn_size", {"type": int, "metavar": "N",
                                         "help": "text: units of the encoder's and the decoder's GRU (default 256)"}),
    "--word-dropout": ("model", "word_dropout", {
        "type": float, "metavar": "P",
        "help": "text: the share of the decoder's input tokens replaced by <unk> while training, so that it must "
                "use z (Bowman et al.'s 0.25-0.5; default 0.3; 0: teacher forcing throughout)"}),
    "--language-model": ("model", "language_model", {
        "action": "store_true", "default": None,
        "help": "text: train the baseline, the decoder alone without z (its KL is 0 and its bound the exact "
                "log-likelihood), to set beside a sentence VAE of the same budget (default off)"}),
    "--tokens": ("data", "tokens", {
        "choices": ("word", "char", "bpe"),
        "help": "text: word (lower-cased, punctuation split off; default), char, or bpe (subwords learned on the "
                "training lines)"}),
    "--vocab-size": ("data", "vocab_size", {
        "type": int, "metavar": "N",
        "help": "text: keep the N most frequent tokens of the training lines, <unk> for the rest (bpe: learn N "
                "subwords) (default 10000)"}),
    "--max-length": ("data", "max_length", {
        "type": int, "metavar": "N", "help": "text: cut lines to N tokens, and say how many were cut (default 40)"}),
    "--binarize": ("data", "binarize", {"choices": BINARIZATIONS,
                                        "help": "none (grey levels), dynamic (fresh draw per batch) or static "
                                                "(default none)"}),
    "--validation-fraction": ("data", "validation_fraction", {
        "type": float, "help": "the share of the training data held out to validate on (default 1/12)"}),
    "--test-fraction": ("data", "test_fraction", {
        "type": float, "help": "the share held out to test on, for sources without their own test split "
                               "(default 1/6)"}),
    "--split-seed": ("data", "split_seed", {
        "type": int, "help": "seed of the split into train, validation and test (default 0), "
                             "fixed so that runs with different --seed see the same split"}),
    "--epochs": ("train", "epochs", {"type": int,
                                     "help": "the epoch budget; early stopping may end sooner (default 30)"}),
    "--batch-size": ("train", "batch_size", {"type": int,
                                             "help": "default 256, or a power of two within a smaller training "
                                                     "split; under torchrun, the global batch of all processes"}),
    "--learning-rate": ("train", "learning_rate", {"type": float, "help": "Adam step size (default 3e-3)"}),
    "--adam-beta2": ("train", "adam_beta2", {"type": float, "help": "Adam's beta2 (default 0.99)"}),
    "--weight-average": ("train", "weight_average", {
        "type": float, "metavar": "DECAY",
        "help": "per-step decay of the running average of the weights that validation, model.safetensors and the "
                "test figures use (default 0.998; 0: off, the raw weights)"}),
    "--output-bias-from-data": ("train", "output_bias_from_data", {
        "action": argparse.BooleanOptionalAction,
        "help": "start the decoder's output at the training data's mean (default; --no-output-bias-from-data: "
                "PyTorch's random start)"}),
    "--lr-schedule": ("train", "lr_schedule", {
        "choices": LR_SCHEDULES, "help": "constant (default), or cosine: decay to 0 over the --epochs budget"}),
    "--mc-samples": ("train", "mc_samples", {"type": int, "help": "L, samples of z per input (default 1)"}),
    "--objective": ("train", "objective", {
        "choices": OBJECTIVES, "help": "the bound to maximize: elbo, or iwae, the importance-weighted bound "
                                       "(default elbo)"}),
    "--iwae-samples": ("train", "iwae_samples", {
        "type": int, "metavar": "K", "help": "K, samples of z per input of the iwae objective (default 5)"}),
    "--beta": ("train", "beta", {"type": float, "help": "weight of the KL term (default 1)"}),
    "--warmup-epochs": ("train", "warmup_epochs", {
        "type": int, "help": "KL warm-up: beta rises from 0 over this many epochs (default 0; text: a third of "
                             "--epochs)"}),
    "--free-bits": ("train", "free_bits", {"type": float,
                                           "help": "KL floor per latent dimension, nats (default 0: off)"}),
    "--patience": ("train", "patience", {"type": int, "help": "early-stopping patience in epochs (default 10)"}),
    "--seed": ("train", "seed", {
        "type": int, "help": "seed of the initial weights, the batches' order and every draw of z (default 0)"}),
    "--device": ("train", "device", device_keywords(default=None)),
    "--precision": ("train", "precision", {"choices": PRECISIONS,
                                           "help": "bf16: autocast the networks on a CUDA GPU (default fp32)"}),
    "--cuda-graphs": ("train", "cuda_graphs", {
        "action": argparse.BooleanOptionalAction,
        "help": "on a CUDA GPU, replay each full batch's step as one captured CUDA graph (default; "
                "--no-cuda-graphs: launch every kernel from Python)"}),
    "--step": ("train", "step", {
        "choices": STEPS,
        "help": "auto (default): a CPU run of a ReLU MLP with Bernoulli pixels on the ELBO computes its gradients "
                "by a hand-written backward pass, equal to autograd's to float32 rounding and faster; autograd: "
                "always autograd's step"}),
    "--threads": ("train", "threads", THREADS_KEYWORDS),
    "--checkpoint-every-steps": ("train", "checkpoint_every_steps", {
        "type": int, "metavar": "N",
        "help": "also checkpoint every N steps (default: only at the end of every epoch)"}),
    "--checkpoint-every-minutes": ("train", "checkpoint_every_minutes", {
        "type": float, "metavar": "M", "help": "also checkpoint every M minutes (default: only by epoch)"}),
    "--tensorboard": ("train", "tensorboard", {
        "action": argparse.BooleanOptionalAction,
        "help": "also log each epoch's figures, samples and reconstructions for TensorBoard in RUN_DIR/tensorboard/ "
                "(needs pip install 'vaekit[tensorboard]'; default off)"}),
    "--stream": ("data", "stream", {
        "action": argparse.BooleanOptionalAction,
        "help": "decode an image folder from disk batch by batch (--no-stream: hold it in memory); by default "
                "folders too large for a quarter of memory stream"}),
    "--workers": ("data", "workers", {"type": int, "metavar": "N",
                                      "help": "processes decoding a streamed folder (default 2; 0: in the trainer)"}),
}
LOADER_SETTINGS = ("stream", "workers")  # how data is read, not which: a resumed run may change them


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a VAE and write a run directory", epilog=EXAMPLES,
        description="Train a VAE by maximizing the ELBO, validating every epoch with early stopping.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_source_flags(parser, new_run=True)
    add_out_flag(parser, "the run directory to create", metavar="RUN_DIR", unset="none; required, but for --resume")
    parser.add_argument("--config", metavar="TOML",
                        help="a TOML file with [data], [model], [train] tables, which flags override "
                             "(default: none, the defaults of each setting)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue this run exactly from its last checkpoint (after Ctrl-C, a kill or a crash); "
                             "only --epochs, --patience, --learning-rate, --device and checkpoint flags may change "
                             "(default: none, a new run)")
    add_overwrite_flag(parser, "a run already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    for flag, (_, _, keywords) in SETTINGS.items():
        parser.add_argument(flag, **keywords)
    add_json_flag(parser, "the test figures")
    add_debug_flag(parser)
    parser.set_defaults(handler=run)


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    overrides: dict[str, dict[str, object]] = {"data": data_overrides(args), "model": {}, "train": {}}
    for flag, (section, field, _) in SETTINGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides[section][field] = value
    return overrides


def _config_and_out(args: argparse.Namespace, world: World) -> tuple[RunConfig, Path]:
    from vaekit.errors import UserError
    from vaekit.runs.directory import read_config

    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise UserError("--resume RUN_DIR continues that run in place; drop --out")
        out = Path(args.resume)
        base, _ = world.from_main(lambda: read_config(out))  # rank 0's run, wherever the others run
        overrides = _overrides(args)
        _refuse_changes(out, base, overrides)
        config = base.with_overrides(overrides)
    else:
        if not args.out:
            raise UserError("--out RUN_DIR is required: the folder to write the run into")
        out = Path(args.out)
        config = load_toml(args.config) if args.config else RunConfig()
        config = config.with_overrides(_overrides(args))
    return config, out


def _flag_of(section: str, field: str) -> str:
    """The flag that sets a config field: '--latent-dim' for ("model", "latent_dim"), '--data' for the source."""
    flags = {(section, field): flag for flag, (section, field, _) in SETTINGS.items()}
    flags.update({("data", field): "--" + flag.replace("_", "-") for flag, field in DATA_FLAG_FIELDS.items()})
    return flags[(section, field)]


def _refuse_changes(out: Path, saved: RunConfig, overrides: dict[str, dict[str, object]]) -> None:
    """A resumed run continues exactly: the flags given that would make it another run, named in one line."""
    from vaekit.errors import UserError
    from vaekit.runs.resume import RESUMABLE_SETTINGS

    may_change = {("train", field) for field in RESUMABLE_SETTINGS} | {("data", field) for field in LOADER_SETTINGS}
    refused = [_flag_of(section, field) for section, values in overrides.items() for field, value in values.items()
               if (section, field) not in may_change and value != getattr(getattr(saved, section), field)]
    if refused:
        allowed = [flag for flag, (section, field, _) in SETTINGS.items() if (section, field) in may_change]
        raise UserError(
            f"{out}: --resume keeps the run's data and model and continues its training exactly, so it cannot change "
            f"{', '.join(refused)}; only {', '.join(allowed)} may. Start a new run with --out to change the others"
        )


def _nothing_to_do(out: Path, epochs: int | None, world: World) -> bool:
    """Whether a resumed run has trained the --epochs asked for already; if so, a note says so, and nothing
    changes (training on would only rewrite the run's results and pictures, and its config with the smaller
    budget)."""
    from vaekit.training.checkpointer import epochs_trained

    done = world.from_main(lambda: epochs_trained(out))
    if epochs is None or done is None or done < epochs:
        return False
    if world.is_main:
        than = "more than" if done > epochs else "all of"
        print(f"vaekit train: {out} has trained {done} epochs, {than} --epochs {epochs}: nothing to do; "
              "pass a larger --epochs to go on", file=sys.stderr)
    return True


def run(args: argparse.Namespace) -> int:
    from vaekit.api import train
    from vaekit.runs.directory import RUN_FILES
    from vaekit.runtime.cpu import torch_threads
    from vaekit.runtime.world import joined_world

    with joined_world() as world:  # under torchrun: the process group, for reading the run and training it
        config, out = _config_and_out(args, world)
        if args.resume and _nothing_to_do(out, args.epochs, world):
            return 0
        with torch_threads(config.train.threads):  # the whole command's: the pictures and report too
            trained = train(config, out, overwrite=args.overwrite, resume=bool(args.resume), progress=not args.quiet)
    if trained is None:
        return 0  # a rank other than 0 of a torchrun launch: rank 0 reports
    results = trained.results or {}
    if args.json:
        print(json.dumps({"run_dir": str(out), **results}))
        return 0
    print(
        f"test -ELBO {-results['test_elbo']:.2f} nats per example "
        f"(reconstruction {-results['test_reconstruction']:.2f}, KL {results['test_kl']:.2f}) "
        f"on {results['test_examples']} examples; best epoch {results['best_epoch']}",
    )
    pictures = [name for name in RUN_FILES if name.endswith((".png", ".txt")) and (out / name).exists()]
    pictures += [name for name in RUN_FILES if name.endswith(".html") and (out / name).exists()]  # the report last
    print(f"run written to {out}/: {', '.join(pictures)}", file=sys.stderr)
    return 0
