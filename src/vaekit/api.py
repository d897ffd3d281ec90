"""The Python API: train a run, load it, and sample, encode, decode and reconstruct in data units.

    import vaekit
    run = vaekit.train(vaekit.RunConfig(), "runs/digits")       # trains on the embedded digits
    images = run.sample(16)                                       # (16, 1, 8, 8) uint8
    loc, scale = run.encode(images)                               # (16, 20) each
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.config import RunConfig
from vaekit.data import IMAGE, load_data, read_source, split_source
from vaekit.data.source import ARRAY, RawData, Splits, in_unit_interval
from vaekit.device import resolve_device
from vaekit.errors import UserError
from vaekit.pictures import save_image_grid, save_loss_curve, save_reconstruction_grid
from vaekit.run import (
    DataInfo, build_model, load_model, prepare_output_dir, read_config, read_metrics, read_results, write_config,
)
from vaekit.training import Trainer, write_results

logger = logging.getLogger(__name__)
PICTURE_SAMPLES = 64
PICTURE_RECONSTRUCTIONS = 32


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
    """auto: Bernoulli for pixels or values in [0, 1], Gaussian for anything else."""
    unit = in_unit_interval(splits.train.x) and splits.raw.kind != "table"
    if requested == "auto":
        return "bernoulli" if unit else "gaussian"
    if requested == "bernoulli" and not in_unit_interval(splits.train.x):
        raise UserError(
            f"{splits.raw.description}: likelihood = 'bernoulli' needs values in [0, 1], but the data spans "
            f"[{splits.train.x.min():.3g}, {splits.train.x.max():.3g}]; use --likelihood gaussian"
        )
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
) -> TrainedVAE:
    """Train a VAE into the run directory `out` and return it loaded.

    `data` (an array or `RawData`) trains on memory instead of `config.data.source`. With
    `resume=True` the run continues exactly from its last checkpoint (the saved config is used).
    """
    out = Path(out)
    if resume:
        saved, saved_info = read_config(out)
        config = saved if config is None else replace(config, data=saved.data, model=saved.model)
    config = config or RunConfig()
    if data is None:
        splits = load_data(config.data)
    else:
        raw = data if isinstance(data, RawData) else raw_from_array(data, labels)
        splits = split_source(raw, config.data)
    info = DataInfo(
        description=splits.raw.description,
        kind=splits.raw.kind,
        event_shape=splits.event_shape,
        likelihood=resolve_likelihood(config.model.likelihood, splits),
        codec=splits.codec.to_dict(),
        counts={"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        columns=splits.raw.columns,
        class_names=splits.raw.class_names,
    )
    if resume and info.event_shape != saved_info.event_shape:
        raise UserError(
            f"{out}: this run was made for data of shape {saved_info.event_shape}, not {info.event_shape} "
            f"({info.description}); resume with the run's own data"
        )
    device = resolve_device(config.train.device)
    torch.manual_seed(config.train.seed)  # weight initialization
    model = build_model(config, info)
    trainer = Trainer(
        model, splits, config.train, out, device,
        binarize_dynamically=config.data.binarize == "dynamic", progress_bar=progress,
    )
    if resume:
        trainer.resume()
    else:
        prepare_output_dir(out, overwrite)
        write_config(out, config, info)
    trainer.fit()
    write_results(trainer)
    trained = TrainedVAE(out, device=str(device))
    write_pictures(trained, splits)
    return trained


def write_pictures(run: TrainedVAE, splits: Splits) -> None:
    """samples.png, reconstructions.png (image data) and loss.png in the run directory."""
    save_loss_curve(run.metrics, run.run_dir / "loss.png", title=run.data.description)
    if run.data.kind != IMAGE:
        return
    save_image_grid(run.sample(PICTURE_SAMPLES, seed=run.config.train.seed), run.run_dir / "samples.png", columns=8)
    originals = splits.test.x[:PICTURE_RECONSTRUCTIONS]
    save_reconstruction_grid(originals, run.reconstruct(originals), run.run_dir / "reconstructions.png")
