"""Typed, frozen settings for data, model and training, and their TOML/JSON forms.

Every field's default says why it is what it is. Validation happens in `__post_init__`, so an
absurd setting fails where it is made, with a message naming the setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vaekit.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LIKELIHOODS = ("auto", "bernoulli", "gaussian")
GAUSSIAN_VARIANCES = ("per-dimension", "shared")
ARCHITECTURES = ("auto", "mlp", "conv", "rnn")
# gated: each hidden layer is (W x + b) * sigmoid(V x + c), the GatedDense layer of the VampPrior and
# Exemplar VAE papers' networks (dense layers only; conv layers refuse it)
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "softplus", "gated")
BINARIZATIONS = ("none", "dynamic", "static")
OBJECTIVES = ("elbo", "iwae")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
STEPS = ("auto", "autograd")  # how a training step computes its gradients (TrainConfig.step)
LR_SCHEDULES = ("constant", "cosine")
DATA_FORMATS = ("auto", "digits", "idx", "images", "npy", "npz", "csv", "audio", "text")
TOKENIZATIONS = ("word", "char", "bpe")
COMMAND_LINE = "command line"  # the origin of settings given as flags, not read from a file
DEFAULT_BATCH = 256  # TrainConfig.batch_size when it is not given and the data holds that many


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name} = {value!r} is not one of {', '.join(choices)}")


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"  # the embedded default: trains in seconds on any laptop
    data_format: str = "auto"  # detected from the path; set to force a reader
    data_dir: str | None = None  # where the IDX files of fashion-mnist/mnist live, if not the Debian path
    binarize: str = "none"  # none keeps grey levels (as pytorch/examples does); dynamic is the papers' protocol
    validation_fraction: float = 1 / 12  # 5,000 of Fashion-MNIST's 60,000 training images
    test_fraction: float = 1 / 6  # only for sources without their own test split (digits, folders, tables)
    split_seed: int = 0  # fixed, so every run of a dataset sees the same split whatever the training seed
    image_size: tuple[int, int] | None = None  # (H, W) to resize an image folder to; None keeps the size
    channels: int | None = None  # 1 or 3 to force grey or RGB; None takes what the images hold
    label_column: str | None = None  # a CSV column that holds labels rather than data
    columns: tuple[str, ...] | None = None  # the CSV columns to model; None takes every numeric one
    array_key: str = "x"  # the .npz key of the data
    label_key: str = "y"  # the .npz key of the labels, if present
    sample_rate: int | None = None  # Hz to resample recordings to; None takes the rate most of them have
    clip_seconds: float | None = None  # every recording cut or padded to this; None takes the longest's length
    # Image folders larger than memory decode from disk batch by batch (vaekit.data.streaming); None decides
    # by size, so small folders keep the faster in-memory path. The pixels, split and order are the same.
    stream: bool | None = None
    workers: int = 2  # processes decoding a streamed folder while the model trains; 0 decodes between steps
    # Text (one sentence or short document per line): words (lower-cased, punctuation split off), characters,
    # or subwords by byte-pair encoding learned on the training split (Hugging Face tokenizers, locally)
    tokens: str = "word"
    vocab_size: int = 10_000  # the training split's most frequent tokens; the rest become <unk> (bpe: its size)
    max_length: int = 40  # tokens per line; longer lines are cut (and counted), as Bowman et al. cap sentences
    encoding: str = "utf-8"  # of a text file; latin-1, cp1252, ... for files in another

    def __post_init__(self) -> None:
        _choice("binarize", self.binarize, BINARIZATIONS)
        _choice("data_format", self.data_format, DATA_FORMATS)
        _check(0 <= self.validation_fraction < 1, f"validation_fraction = {self.validation_fraction} must be in [0, 1)")
        _check(0 <= self.test_fraction < 1, f"test_fraction = {self.test_fraction} must be in [0, 1)")
        _check(
            self.validation_fraction + self.test_fraction < 1,
            "validation_fraction + test_fraction must leave some data for training",
        )
        if self.image_size is not None:
            _check(
                len(self.image_size) == 2 and all(int(s) > 0 for s in self.image_size),
                f"image_size = {self.image_size} must be two positive sizes, e.g. 32x32",
            )
        _check(self.channels in (None, 1, 3), f"channels = {self.channels} must be 1 (grey) or 3 (RGB)")
        _check(self.sample_rate is None or self.sample_rate > 0, f"sample_rate = {self.sample_rate} must be above 0 Hz")
        _check(self.clip_seconds is None or self.clip_seconds > 0,
               f"clip_seconds = {self.clip_seconds} must be above 0")
        _check(self.stream in (None, True, False), f"stream = {self.stream!r} must be true, false or unset (by size)")
        _check(isinstance(self.workers, int) and self.workers >= 0, f"workers = {self.workers} must be 0 or more")
        _choice("tokens", self.tokens, TOKENIZATIONS)
        _check(self.vocab_size >= 2, f"vocab_size = {self.vocab_size} must be at least 2")
        _check(self.max_length >= 1, f"max_length = {self.max_length} must be at least 1 token")
        _check(bool(self.encoding), "encoding must name a text encoding, such as utf-8 or latin-1")


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 20  # the reference 784-400-20 network of the paper and pytorch/examples
    architecture: str = "auto"  # auto: conv for sound (spectrograms), mlp for anything else; conv needs images
    hidden_sizes: tuple[int, ...] = (400,)  # one hidden layer of 400, the reference shape
    activation: str = "relu"
    conv_channels: tuple[int, ...] = (32, 64)  # each conv layer halves the image; two suit 8x8 to 64x64
    likelihood: str = "auto"  # auto: Bernoulli for pixels in [0, 1], Gaussian for real-valued data
    gaussian_variance: str = "per-dimension"  # a learned variance per data dimension, or one shared
    # q(z|x, y) and p(x|z, y): encoder and decoder see the label y beside x and z (a conditional VAE), so that
    # `sample --label` generates a chosen class and `convert` renders an input's style as another class
    conditional: bool = False
    # Text (architecture rnn, Bowman et al. 2016): token embeddings, a GRU encoder to μ and log σ², and a GRU
    # decoder that starts from z and sees z beside every input token
    embedding_dim: int = 128
    rnn_size: int = 256  # units of each GRU
    # The share of the decoder's input tokens replaced by <unk> while training, so that it must lean on z
    # (Bowman et al.'s 0.25-0.5 keep the KL term above 0); 0 is teacher forcing throughout
    word_dropout: float = 0.3
    # The baseline a sentence VAE is measured against: its decoder alone, without z (q(z|x) is the prior, so
    # the KL is 0 and the bound is the exact log-likelihood); trained with the same budget, it says whether z
    # helps at all
    language_model: bool = False

    def __post_init__(self) -> None:
        _check(self.latent_dim >= 1, f"latent_dim = {self.latent_dim} must be at least 1")
        _choice("architecture", self.architecture, ARCHITECTURES)
        _choice("activation", self.activation, ACTIVATIONS)
        _check(
            not (self.architecture == "conv" and self.activation == "gated"),
            "activation = gated is for dense layers; use architecture = mlp, or another activation with conv",
        )
        _choice("likelihood", self.likelihood, LIKELIHOODS)
        _choice("gaussian_variance", self.gaussian_variance, GAUSSIAN_VARIANCES)
        _check(self.embedding_dim >= 1, f"embedding_dim = {self.embedding_dim} must be at least 1")
        _check(self.rnn_size >= 1, f"rnn_size = {self.rnn_size} must be at least 1")
        _check(0 <= self.word_dropout < 1, f"word_dropout = {self.word_dropout} must be in [0, 1), such as 0.3")
        _check(all(h >= 1 for h in self.hidden_sizes), f"hidden_sizes = {self.hidden_sizes} must all be at least 1")
        _check(
            len(self.conv_channels) >= 1 and all(c >= 1 for c in self.conv_channels),
            f"conv_channels = {self.conv_channels} must be one or more positive counts",
        )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30  # enough for digits to look like digits; early stopping ends it sooner if it stalls
    # None: DEFAULT_BATCH, or the largest power of two within a smaller training split (`batch_size_for`),
    # resolved once the data is known and recorded in the run's config.json. DEFAULT_BATCH is twice
    # pytorch/examples' 128, with a step size to match: on a CPU the larger batch is faster per image, and the
    # reference network reached a test loss of 245 nats in half the epochs (docs/performance.md).
    batch_size: int | None = None
    learning_rate: float = 3e-3
    # Adam's β₂: a shorter memory of squared gradients than its usual 0.999 keeps pace with the larger step.
    adam_beta2: float = 0.99
    # Polyak averaging: decay per step of a running average of the weights, which is the model that
    # validation, model.safetensors and the test figures use; the steps themselves move the raw weights.
    # It smooths the jitter of a large step: the average spans about the last ninth of the steps so far,
    # up to ~500 steps at 0.998 (vaekit.training.averaging); 0 turns it off.
    weight_average: float = 0.998
    # Start the decoder's output bias at the mean of 512 training examples (as logits for Bernoulli pixels)
    # rather than at random: the first epoch is spent learning features, not the average image.
    output_bias_from_data: bool = True
    # constant, or cosine: the step size falls from learning_rate to 0 along a half cosine over the
    # `epochs` budget (per step). A fixed budget ends better with it; early stopping may end it sooner, and
    # a run resumed with more epochs stretches what is left of the curve.
    lr_schedule: str = "constant"
    mc_samples: int = 1  # L in the ELBO; one sample per input suffices for large batches (the paper)
    objective: str = "elbo"  # or iwae, the importance-weighted bound
    iwae_samples: int = 5  # K of the IWAE objective
    beta: float = 1.0  # weight of the KL term; 1 is the true ELBO
    # KL warm-up: beta rises linearly from 0 over this many epochs. None: 0, except for text, whose strong
    # decoder would otherwise learn to ignore z first (Bowman et al.): a third of the epoch budget there
    warmup_epochs: int | None = None
    free_bits: float = 0.0  # a floor (nats) on each latent dimension's batch-averaged KL; 0 is off
    patience: int | None = 10  # epochs without a better validation ELBO before stopping; None trains all epochs
    seed: int = 0
    device: str = "auto"
    # bf16 autocast of the networks' matrix products on a CUDA GPU; the bound's terms stay float32. Off by
    # default: fp32 is what the reference numbers use. Other devices train in fp32 whatever is asked.
    precision: str = "fp32"
    # On a CUDA GPU, capture a training step once as a CUDA graph and replay it for every full batch: the
    # same numbers, without the host issuing ~100 kernels a step (vaekit.training.cuda_graph). Ignored elsewhere.
    cuda_graphs: bool = True
    # auto: a CPU run of a dense ReLU network with Bernoulli pixels on the ELBO takes the step whose gradients are
    # written out by hand (vaekit.training.explicit_step: equal to autograd's to float32 rounding, about a fifth
    # faster); every other run takes autograd's step, as every run does with "autograd". Runs from before the
    # explicit step, whose config.json has no step, keep autograd's, so they resume bit for bit.
    step: str = "auto"
    # CPU threads while training; None keeps torch's default, the physical cores. On a machine busy with
    # other work fewer can be much faster (docs/performance.md measures it).
    threads: int | None = None
    checkpoint_every_steps: int | None = None  # besides every epoch
    checkpoint_every_minutes: float | None = None  # besides every epoch
    # Also log each epoch's figures and pictures for TensorBoard in RUN/tensorboard/ (the optional extra
    # vaekit[tensorboard]); metrics.jsonl stays the record. Off: most runs need no second log.
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"epochs = {self.epochs} must be at least 1")
        _check(self.batch_size is None or self.batch_size >= 1, f"batch_size = {self.batch_size} must be at least 1")
        _check(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"learning_rate = {self.learning_rate} must be a positive number such as 1e-3",
        )
        _check(0 <= self.adam_beta2 < 1, f"adam_beta2 = {self.adam_beta2} must be in [0, 1), such as 0.99 or 0.999")
        _check(
            0 <= self.weight_average < 1,
            f"weight_average = {self.weight_average} must be in [0, 1): a decay per step such as 0.998, or 0 for off",
        )
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check(self.mc_samples >= 1, f"mc_samples = {self.mc_samples} must be at least 1")
        _choice("objective", self.objective, OBJECTIVES)
        _check(self.iwae_samples >= 1, f"iwae_samples = {self.iwae_samples} must be at least 1")
        _check(math.isfinite(self.beta) and self.beta >= 0, f"beta = {self.beta} must be a number >= 0")
        _check(self.warmup_epochs is None or self.warmup_epochs >= 0,
               f"warmup_epochs = {self.warmup_epochs} must be >= 0")
        _check(math.isfinite(self.free_bits) and self.free_bits >= 0, f"free_bits = {self.free_bits} must be >= 0")
        _check(self.patience is None or self.patience >= 1, f"patience = {self.patience} must be at least 1")
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("step", self.step, STEPS)
        _check(self.threads is None or self.threads >= 1, f"threads = {self.threads} must be at least 1")
        _check(
            self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
            f"checkpoint_every_steps = {self.checkpoint_every_steps} must be at least 1",
        )
        _check(
            self.checkpoint_every_minutes is None or self.checkpoint_every_minutes > 0,
            f"checkpoint_every_minutes = {self.checkpoint_every_minutes} must be positive",
        )


def batch_size_for(train: TrainConfig, train_examples: int) -> int:
    """The batch a run trains with: the one given, else DEFAULT_BATCH, or for a training split smaller than
    that the largest power of two it holds, so that a small dataset trains without being told a batch size."""
    if train.batch_size is not None:
        return train.batch_size
    if train_examples >= DEFAULT_BATCH:
        return DEFAULT_BATCH
    return 1 << (max(train_examples, 1).bit_length() - 1)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "config") -> RunConfig:
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        _reject_unknown(raw, list(sections), origin)
        built = {}
        for name, section_cls in sections.items():
            values = raw.get(name, {})
            if not isinstance(values, dict):
                raise UserError(f"{origin}: [{name}] must be a table of settings")
            built[name] = _build(section_cls, values, f"{origin}: [{name}]")
        return cls(**built)

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> RunConfig:
        """Return a copy with the given `{section: {field: value}}` replaced (command-line flags)."""
        merged = self.to_dict()
        for section, values in overrides.items():
            merged[section].update({k: v for k, v in values.items() if v is not None})
        return RunConfig.from_dict(merged, COMMAND_LINE)


def _reject_unknown(raw: dict[str, Any], valid: list[str], origin: str) -> None:
    for key in raw:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
            raise UserError(f"{origin}: unknown key {key!r}{hint}")


def _build(cls: type, values: dict[str, Any], origin: str) -> Any:
    _reject_unknown(values, [f.name for f in fields(cls)], origin)
    annotations = typing.get_type_hints(cls)
    converted = {}
    for f in fields(cls):
        if f.name in values:
            value = values[f.name]
            expected = _misfit(value, annotations[f.name])
            if expected:  # before the dataclass compares a string with a number, in Python's words
                raise UserError(f"{origin}: {f.name} = {_shown(value)} must be {expected}")
            # TOML and JSON have lists; the configs hold tuples so that they stay hashable and frozen.
            converted[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**converted)
    except TypeError as error:
        raise UserError(f"{origin}: {error}") from error
    except UserError as error:  # a check of __post_init__: a file's is named, a flag's names itself
        if origin.startswith(COMMAND_LINE):
            raise
        raise UserError(f"{origin}: {error}") from error


def _shown(value: Any, limit: int = 60) -> str:
    """A value as a message shows it: its repr, cut to `limit` characters."""
    try:
        shown = repr(value)
    except ValueError:  # an integer of more digits than Python prints
        shown = "an integer of more than 4300 digits"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
LIST_NAMES = {int: "integers", float: "numbers", str: "strings"}


def _misfit(value: Any, annotation: Any) -> str | None:
    """What a setting's value must be, in a TOML writer's words, if it does not fit the field's annotation
    (bool, int, float, str, tuple[int, ...], tuple[int, int], or one of these or None); None when it fits."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    if options:
        fits = [_misfit(value, option) for option in options if option is not type(None)]
        return None if value is None or None in fits else " or ".join(fits)
    if typing.get_origin(annotation) is tuple:
        items = typing.get_args(annotation)
        count = "" if items[-1] is Ellipsis else f"{len(items)} "
        wanted = f"a list of {count}{LIST_NAMES.get(items[0], 'values')}"
        if not isinstance(value, (list, tuple)) or (items[-1] is not Ellipsis and len(value) != len(items)):
            return wanted
        return wanted if any(_misfit(item, items[0]) for item in value) else None
    if annotation not in TYPE_NAMES:
        return None  # a type without a check here: the dataclass's own validation decides
    if annotation is float:  # an integer too large for a float (beyond 1.8e308) is no number a setting takes
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max
    else:
        fits = isinstance(value, annotation) and (annotation is bool or not isinstance(value, bool))
    return None if fits else TYPE_NAMES[annotation]


def load_toml(path: str | Path) -> RunConfig:
    """Read a run configuration from a TOML file with [data], [model] and [train] tables."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file; pass the path of a .toml file (see configs/)")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid TOML ({error}); fix the file or see configs/ for examples") from error
    except RecursionError as error:  # tomllib's parser recurses into each nested array or table
        raise UserError(f"{path}: not valid TOML (arrays or tables nested too deeply); fix the file") from error
    except ValueError as error:  # chiefly an integer of more digits than Python converts
        reason = f"a number of more than {sys.get_int_max_str_digits()} digits" if "digits" in str(error) else error
        raise UserError(f"{path}: not valid TOML ({reason}); fix the file or see configs/ for examples") from error
    return RunConfig.from_dict(raw, str(path))
