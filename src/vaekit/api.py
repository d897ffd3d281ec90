"""The Python API: train a run, load it, and sample, encode, decode and reconstruct in data units.

    import vaekit
    run = vaekit.train(vaekit.RunConfig(), "runs/digits")       # trains on the embedded digits
    images = run.sample(16)                                       # (16, 1, 8, 8) uint8
    loc, scale = run.encode(images)                               # (16, 20) each
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.runs.checkpoint import atomic_write_text
from vaekit.config import DataConfig, RunConfig, TrainConfig
from vaekit.data import IMAGE, TABLE, detect_format, read_source, split_source
from vaekit.data.codec import IdentityCodec, StandardizeCodec
from vaekit.data.source import ARRAY, RawData, Splits, in_unit_interval
from vaekit.data.streaming import load_training_data
from vaekit.data.tables import settings_like_run
from vaekit.runtime.device import resolve_device
from vaekit.runtime.world import World, joined_world, rank_device
from vaekit.errors import UserError
from vaekit.reporting.outputs import as_pixels, csv_text, drawable, save_column_histograms
from vaekit.reporting.pictures import save_image_grid, save_loss_curve, save_reconstruction_grid
from vaekit.runs.directory import (
    DataInfo, build_model, load_model, prepare_output_dir, read_config, read_metrics, read_results, write_config,
)
from vaekit.training.loop import Trainer, stop_on_signals, write_results

logger = logging.getLogger(__name__)
PICTURE_SAMPLES = 64
PICTURE_RECONSTRUCTIONS = 32
PICTURE_TABLE_ROWS = 1000  # enough rows for a histogram per column to be smooth
WIDEST_PICTURED_ARRAY = 64  # flat arrays wider than this are not tables a person reads (e.g. flattened images)
# Settings a resumed run may change; any other would make it a different run, not a continuation.
# cuda_graphs changes how a step is launched, not its numbers (equal bit for bit on a GPU: tests/test_cuda.py).
RESUMABLE_SETTINGS = ("epochs", "patience", "learning_rate", "device", "cuda_graphs", "checkpoint_every_steps",
                      "checkpoint_every_minutes")


class TrainedVAE:
    """A trained run loaded from its directory; every method takes and returns data in source units."""

    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.model, self.config, self.data = load_model(self.run_dir, self.device)
        self.codec = self.data.make_codec()

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.run_dir)

    @property
    def results(self) -> dict[str, Any] | None:
        return read_results(self.run_dir)

    def _to_model(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x)
        if tuple(x.shape[1:]) != self.data.event_shape:
            raise UserError(
                f"data of shape {tuple(x.shape[1:])} per example does not fit this run, which was trained on "
                f"{self.data.event_shape} ({self.data.description})"
            )
        return self.codec.to_model(torch.as_tensor(x).to(self.device))

    def _to_data(self, values: torch.Tensor) -> np.ndarray:
        return self.codec.from_model(values).cpu().numpy()

    def load_inputs(
        self, source: str | None = None, split: str | None = None, **data_settings: Any
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Examples (stored form) and labels from the run's own data or another `source` read alike.

        `split` is train, validation, test or all; by default the test split of the run's own data
        or of a source with its own test files, else all of a new source.
        """
        data_config = self.config.data
        if source is not None or data_settings:
            data_config = replace(data_config, **({"source": source, "data_format": "auto"} if source else {}),
                                  **data_settings)
        if source is not None:
            data_config = self._read_like_run(data_config, data_settings)
        raw = read_source(data_config)
        split = split or ("test" if source is None or raw.test_x is not None else "all")
        if split == "all":
            parts = [(raw.x, raw.y)] + ([(raw.test_x, raw.test_y)] if raw.test_x is not None else [])
            x = np.concatenate([p[0] for p in parts])
            y = None if any(p[1] is None for p in parts) else np.concatenate([p[1] for p in parts])
        else:
            chosen = getattr(split_source(raw, data_config), split)
            x, y = chosen.x, chosen.y
        if tuple(x.shape[1:]) != self.data.event_shape:
            raise UserError(
                f"{raw.description}: examples of shape {tuple(x.shape[1:])} do not fit {self.run_dir}, which was "
                f"trained on {self.data.event_shape} ({self.data.description}); pass data like the run's"
            )
        return x, y

    def _read_like_run(self, data_config: DataConfig, given: dict[str, Any]) -> DataConfig:
        """Read a new source as the run's data was read, unless the caller said otherwise: a CSV by the
        run's column names (so their order cannot mislead the model), an image folder in its channels."""
        data_format = detect_format(data_config)
        if data_format == "csv" and self.data.kind == TABLE and "columns" not in given:
            like_run = settings_like_run(
                data_config.source, self.data.columns or (), data_config.label_column, str(self.run_dir)
            )
            if "label_column" in given:
                like_run.pop("label_column")
            return replace(data_config, **like_run)
        if data_format == "images" and self.data.kind == IMAGE and "channels" not in given:
            return replace(data_config, channels=self.data.event_shape[0])
        return data_config

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """μ(x) and σ(x) of q(z|x), each (N, latent_dim)."""
        loc, log_variance = self.model.posterior_parameters(self._to_model(x))
        return loc.cpu().numpy(), torch.exp(0.5 * log_variance).cpu().numpy()

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """E[x|z] for latent codes z (N, latent_dim), in data units."""
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device)
        return self._to_data(self.model.decode_mean(z))

    @torch.no_grad()
    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Decode the posterior mean of each input: x -> μ(x) -> E[x|z=μ(x)], in data units."""
        loc, _ = self.model.posterior_parameters(self._to_model(x))
        return self._to_data(self.model.decode_mean(loc))

    @torch.no_grad()
    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        """Decode `count` draws z ~ p(z) = N(0, I); returns E[x|z] in data units."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return self._to_data(self.model.sample(count, generator))


def resolve_likelihood(requested: str, splits: Splits) -> str:
    """auto: Bernoulli for pixels or values in [0, 1], Gaussian for anything else (and for tables)."""
    unit = in_unit_interval(splits.train.x) and splits.raw.kind != TABLE
    if requested == "auto":
        return "bernoulli" if unit else "gaussian"
    every_split = [splits.train.x, splits.validation.x, splits.test.x]
    if requested == "bernoulli" and not all(in_unit_interval(x) for x in every_split if len(x)):
        low = min(float(x.min()) for x in every_split if len(x))
        high = max(float(x.max()) for x in every_split if len(x))
        raise UserError(
            f"{splits.raw.description}: likelihood = 'bernoulli' needs values in [0, 1], but the data spans "
            f"[{low:.3g}, {high:.3g}]; use --likelihood gaussian"
        )
    if requested == "bernoulli" and isinstance(splits.codec, StandardizeCodec):
        # A table of values in [0, 1] is standardized for a Gaussian; Bernoulli needs it unscaled.
        splits.codec = IdentityCodec()
    return requested


def raw_from_array(x: np.ndarray, y: np.ndarray | None = None, description: str = "array") -> RawData:
    """Wrap an in-memory array: uint8 (N, C, H, W) is taken as images, anything else as float values."""
    x = np.asarray(x)
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[1] in (1, 3):
        return RawData(x, y, IMAGE, description)
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"{description}: holds NaN or infinite values; remove or impute them first")
    return RawData(x, y, ARRAY, description)


def train(
    config: RunConfig | None,
    out: str | Path,
    *,
    data: np.ndarray | RawData | None = None,
    labels: np.ndarray | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
) -> TrainedVAE | None:
    """Train a VAE into the run directory `out` and return it loaded.

    `data` (an array or `RawData`) trains on memory instead of `config.data.source`. With
    `resume=True` the run continues exactly from its last checkpoint: the saved config is used, and
    `config` may change only the training settings in `RESUMABLE_SETTINGS` (e.g. more epochs).
    Ctrl-C or SIGTERM during training writes a checkpoint and raises `TrainingInterrupted`.
    Launched by torchrun, every process calls this and they train one run together
    (vaekit.runtime.world): rank 0 writes it and returns it, the other ranks return None.
    """
    with joined_world() as world:
        return _train(world, config, Path(out), data, labels, overwrite, resume, progress)


def _train(
    world: World, config: RunConfig | None, out: Path, data: np.ndarray | RawData | None, labels: np.ndarray | None,
    overwrite: bool, resume: bool, progress: bool,
) -> TrainedVAE | None:
    if resume:
        saved, saved_info = world.from_main(lambda: read_config(out))  # rank 0's file, wherever the others run
        config = _resumed_config(saved, config, out)
    config = config or RunConfig()
    if data is None:
        _refuse_run_inside_data(out, config.data.source)
        splits = load_training_data(config.data)
    else:
        raw = data if isinstance(data, RawData) else raw_from_array(data, labels)
        splits = split_source(raw, config.data)
    info = DataInfo(
        description=splits.raw.description,
        kind=splits.raw.kind,
        event_shape=splits.event_shape,
        likelihood=resolve_likelihood(config.model.likelihood, splits),  # before codec=: it may swap the codec
        codec=splits.codec.to_dict(),
        counts={"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        columns=splits.raw.columns,
        class_names=splits.raw.class_names,
    )
    if resume and (info.event_shape, info.counts) != (saved_info.event_shape, saved_info.counts):
        raise UserError(
            f"{out}: this run was made for data of shape {saved_info.event_shape} with {saved_info.counts} examples, "
            f"not {info.event_shape} with {info.counts} ({info.description}); resume with the run's own data"
        )
    device = rank_device(resolve_device(config.train.device), world)
    torch.manual_seed(config.train.seed)  # weight initialization
    model = build_model(config, info)
    trainer = Trainer(
        model, splits, config.train, out, device, binarize_dynamically=config.data.binarize == "dynamic",
        progress_bar=progress, world=world, workers=config.data.workers,
    )
    # How the global batch was shared out: a resumed run states its latest launch.
    launch = {"processes": world.size, "global_batch": config.train.batch_size} if world.size > 1 else None
    if resume:
        trainer.resume()
        if world.is_main:  # so that info, and the next resume, see the new budget and how this launch runs
            write_config(out, config, saved_info, launch)
    else:
        world.from_main(lambda: (prepare_output_dir(out, overwrite), write_config(out, config, info, launch)))
    with stop_on_signals() as stop:
        trainer.fit(stop)
    write_results(trainer)
    if not world.is_main:
        return None
    trained = TrainedVAE(out, device=str(device))
    write_pictures(trained, splits)
    return trained


def _refuse_run_inside_data(out: Path, source: str) -> None:
    """A run written into an image folder would be read back as images (and classes) by the next run."""
    data = Path(source)
    if data.is_dir() and (out.resolve() == data.resolve() or data.resolve() in out.resolve().parents):
        raise UserError(f"{out}: lies inside the data folder {data}; choose an --out outside it")


def _resumed_config(saved: RunConfig, requested: RunConfig | None, out: Path) -> RunConfig:
    """The saved config with the training settings a resume may change taken from `requested`."""
    if requested is None:
        return saved
    changed = [
        f"{f.name} = {getattr(saved.train, f.name)!r} (not {getattr(requested.train, f.name)!r})"
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE_SETTINGS and getattr(saved.train, f.name) != getattr(requested.train, f.name)
    ]
    if changed:
        raise UserError(
            f"{out}: a resumed run continues exactly, so it keeps {', '.join(changed)}; only "
            f"{', '.join(RESUMABLE_SETTINGS)} may change. Start a new run with --out to change the others"
        )
    # How a folder is read (streamed or not, by how many workers) does not change the run.
    data = replace(saved.data, stream=requested.data.stream, workers=requested.data.workers)
    return replace(requested, data=data, model=saved.model)


def write_pictures(run: TrainedVAE, splits: Splits) -> None:
    """loss.png, and what a person can look at: samples.png and reconstructions.png for pictures;
    samples.csv and histograms.png (data against samples, per column) for tables and flat arrays."""
    save_loss_curve(run.metrics, run.run_dir / "loss.png", title=run.data.description)
    if drawable(run.data):
        samples = as_pixels(run.sample(PICTURE_SAMPLES, seed=run.config.train.seed), run.data)
        save_image_grid(samples, run.run_dir / "samples.png", columns=8)
        originals = np.asarray(splits.test.x[:PICTURE_RECONSTRUCTIONS])  # decodes them, if the folder streams
        save_reconstruction_grid(as_pixels(originals, run.data), as_pixels(run.reconstruct(originals), run.data),
                                 run.run_dir / "reconstructions.png")
    elif _is_readable_table(run.data):
        samples = _draw(run, PICTURE_TABLE_ROWS, seed=run.config.train.seed)
        atomic_write_text(run.run_dir / "samples.csv", csv_text(samples, run.data.columns))
        save_column_histograms(splits.train.x, samples, run.data.columns, run.run_dir / "histograms.png",
                               title=f"{run.data.description}: data and samples x ~ p(x|z)")


def _is_readable_table(data: DataInfo) -> bool:
    narrow = len(data.event_shape) == 1 and data.event_shape[0] <= WIDEST_PICTURED_ARRAY
    return data.kind == TABLE or narrow


@torch.no_grad()
def _draw(run: TrainedVAE, count: int, seed: int) -> np.ndarray:
    """Full draws x ~ p(x|z), z ~ p(z), in data units: unlike E[x|z], they spread as the data should."""
    generator = torch.Generator(device=run.device).manual_seed(seed)
    z = torch.randn(count, run.model.latent_dim, generator=generator, device=run.device)
    observation = run.model.observation_model(z).base_dist
    if isinstance(observation, torch.distributions.Normal):
        values = observation.loc + observation.scale * torch.randn(
            observation.loc.shape, generator=generator, device=run.device
        )
    else:
        values = torch.bernoulli(observation.probs, generator=generator)
    return run._to_data(values)
