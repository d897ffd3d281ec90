"""A run is a directory: config.json, model.safetensors, checkpoint.safetensors, metrics.jsonl, pictures.

`RunInfo` is what config.json holds besides the settings: what the data looked like, so a run can
be loaded, checked against new data and used without the original source.

Reading a run's files needs no torch (`vaekit info` stays quick); what builds or loads a model imports it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaekit import __version__
from vaekit.config import RunConfig
from vaekit.data.source import ARRAY, AUDIO, IMAGE, TABLE, TEXT
from vaekit.errors import UserError
from vaekit.runs.files import atomic_write_text

if TYPE_CHECKING:
    import torch

    from vaekit.data.codec import Codec
    from vaekit.model.vae import VAE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"  # the best weights by validation ELBO
CHECKPOINT_FILE = "checkpoint.safetensors"  # the latest full training state, for --resume
STATE_KEY = "vaekit_state"  # in the checkpoint's safetensors header: JSON of all of its state that is not a tensor
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
EVALUATION_FILE = "evaluation.json"  # `vaekit evaluate`'s figures, keyed by data, split and K
REPORT_FILE = "report.html"  # derived from the rest: `vaekit report` rewrites it at will
TENSORBOARD_DIR = "tensorboard"  # `--tensorboard`'s event files (vaekit.training.tensorboard)
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, CHECKPOINT_FILE, METRICS_FILE, RESULTS_FILE, EVALUATION_FILE, REPORT_FILE,
             "samples.png", "reconstructions.png", "loss.png", "samples.csv", "histograms.png", "samples.txt",
             "reconstructions.txt", TENSORBOARD_DIR)


DATA_KINDS = (IMAGE, TABLE, ARRAY, AUDIO, TEXT)
RESOLVED_LIKELIHOODS = ("bernoulli", "gaussian", "categorical")  # likelihoods.py's and text's, without torch


@dataclass(frozen=True)
class DataInfo:
    """What the model was trained on; enough to read and write data in its units without the source."""

    description: str
    kind: str  # image, table, array, audio or text
    event_shape: tuple[int, ...]
    likelihood: str  # resolved: bernoulli, gaussian, or categorical (over the tokens of text)
    codec: dict[str, Any]
    counts: dict[str, int]  # examples per split
    columns: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    audio: dict[str, int] | None = None  # sound: rate, clip length and STFT (vaekit.data.spectrogram.AudioFormat)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataInfo:
        raw = dict(raw)
        raw["event_shape"] = tuple(raw["event_shape"])
        for key in ("columns", "class_names"):
            raw[key] = tuple(raw[key]) if raw.get(key) is not None else None
        info = cls(**raw)
        info.check()
        return info

    def check(self) -> None:
        """A ValueError saying what, for what `write_config` never writes (a damaged config.json)."""
        from vaekit.data.codec import codec_from_dict

        if not isinstance(self.description, str) or self.kind not in DATA_KINDS:
            raise ValueError(f"data kind {self.kind!r} is not one of {', '.join(DATA_KINDS)}")
        if not self.event_shape or not all(type(size) is int and size >= 1 for size in self.event_shape):
            raise ValueError(f"event_shape {list(self.event_shape)} must be one or more positive sizes")
        if self.likelihood not in RESOLVED_LIKELIHOODS:
            raise ValueError(f"likelihood {self.likelihood!r} is not one of {', '.join(RESOLVED_LIKELIHOODS)}")
        if not isinstance(self.counts, dict) or not all(type(n) is int and n >= 0 for n in self.counts.values()):
            raise ValueError("counts must be numbers of examples per split")
        for names in (self.columns, self.class_names):
            if names is not None and not all(isinstance(name, str) for name in names):
                raise ValueError("columns and class_names must be lists of names")
        codec_from_dict(self.codec, self.event_shape)

    def make_codec(self) -> Codec:
        from vaekit.data.codec import codec_from_dict

        return codec_from_dict(self.codec)


def write_config(run_dir: Path, config: RunConfig, data: DataInfo, launch: dict[str, Any] | None = None) -> None:
    """`launch` says how a distributed run shared its work out (processes, the global batch)."""
    import torch

    payload = {
        "vaekit_version": __version__,
        "torch_version": torch.__version__,
        "config": config.to_dict(),
        "data": asdict(data),
        **({"launch": launch} if launch else {}),
    }
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(payload, indent=2) + "\n")


# Training settings added after runs were first saved, with the values those runs trained with: a run of
# an older vaekit resumes as it began, not with today's defaults.
SETTINGS_BEFORE_THEY_EXISTED = {
    "adam_beta2": 0.999, "weight_average": 0.0, "output_bias_from_data": False, "cuda_graphs": False,
    "step": "autograd",
}


def read_config(run_dir: Path) -> tuple[RunConfig, DataInfo]:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise no_such_run(run_dir)
    if not path.is_file():
        raise UserError(f"{run_dir}: not a vaekit run (no {CONFIG_FILE}); pass the --out folder of a `vaekit train`")
    try:
        raw = json.loads(path.read_text())
        train = raw["config"].setdefault("train", {})
        for key, value in SETTINGS_BEFORE_THEY_EXISTED.items():
            train.setdefault(key, value)
        return RunConfig.from_dict(raw["config"], str(path)), DataInfo.from_dict(raw["data"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        reason = " ".join(str(error).split())[:200]  # one line, whatever a damaged file put in the message
        raise UserError(f"{path}: unreadable run config ({reason}); the run directory is damaged") from error


def no_such_run(run_dir: Path) -> UserError:
    return UserError(f"{run_dir}: no such run directory; pass the --out folder of a `vaekit train`")


def build_model(config: RunConfig, data: DataInfo) -> VAE:
    """The run's model, untrained: a sentence VAE for text (vaekit.model.sentence_vae), else the VAE."""
    from vaekit.model.vae import VAE

    if data.kind == TEXT:
        from vaekit.model.sentence_vae import SentenceVAE

        codec = data.make_codec()
        return SentenceVAE(config.model, codec.vocab_size, codec.max_length)

    classes = len(data.class_names or ()) if config.model.conditional else 0
    return VAE(config.model, data.event_shape, data.likelihood, classes)


def load_model(run_dir: Path, device: torch.device | str = "cpu") -> tuple[VAE, RunConfig, DataInfo]:
    """The best weights of a run, in evaluation mode on `device`."""
    import torch

    from vaekit.runs.weights import load_weights

    config, data = read_config(run_dir)
    path = Path(run_dir) / CONFIG_FILE
    try:
        # On the meta device (shapes, no memory) until the weights are known to fit: a damaged config.json
        # (latent_dim 10**9) would otherwise allocate gigabytes before the shapes are compared.
        with torch.device("meta"):
            model = build_model(config, data)
    except UserError as error:
        raise UserError(f"{path}: {error}") from error
    except (ValueError, TypeError, RuntimeError, OverflowError) as error:
        reason = " ".join(str(error).split())[:200]
        raise UserError(
            f"{path}: describes no model vaekit can build ({reason}); the run directory is damaged"
        ) from error
    load_weights(model, Path(run_dir) / WEIGHTS_FILE)
    return model.to(device).eval(), config, data


def prepare_output_dir(run_dir: Path, overwrite: bool = False) -> None:
    """Create `run_dir`, refusing to clobber an existing run unless `overwrite` is asked for."""
    run_dir = Path(run_dir)
    make_run_directory(run_dir)
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise UserError(
            f"{run_dir}: already holds a run ({', '.join(existing[:3])}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    for name in existing:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def make_run_directory(run_dir: Path) -> None:
    """Create `run_dir` and its parents, with one line where a path on the way is not a folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as error:
        blocking = next((p for p in run_dir.parents if p.exists() and not p.is_dir()), None)
        where = f"{blocking} is a file, not a folder" if blocking else error.strerror
        raise UserError(f"{run_dir}: cannot be created ({where}); choose another --out") from error
    except OSError as error:
        raise UserError(f"{run_dir}: cannot be created ({error.strerror}); choose an --out you can write") from error


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_results(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_evaluations(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The figures of every `vaekit evaluate` saved in the run, by key ("test, K=5000"); {} before the first."""
    path = Path(run_dir) / EVALUATION_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: unreadable ({error}); delete it and run `vaekit evaluate` again") from error


def save_evaluation(run_dir: Path, key: str, figures: dict[str, Any]) -> None:
    """Add (or replace) one evaluation beside the others already saved, atomically."""
    saved = read_evaluations(run_dir)
    saved[key] = figures
    atomic_write_text(Path(run_dir) / EVALUATION_FILE, json.dumps(saved, indent=2) + "\n")


def weights_digest(run_dir: Path) -> str:
    """A fingerprint of the best weights, so that figures saved before a resume changed them can be told apart."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / WEIGHTS_FILE, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
