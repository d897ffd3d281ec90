"""A trained run loaded from its directory: sample, encode, decode and reconstruct in the data's own units.

    run = TrainedVAE("runs/digits")
    images = run.sample(16)                                       # (16, 1, 8, 8) uint8
    loc, scale = run.encode(images)                               # (16, 20) each
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.config import DataConfig
from vaekit.data.batch import Batch
from vaekit.data.codec import PixelCodec
from vaekit.data.loading import detect_format, read_source
from vaekit.data.source import IMAGE, TABLE, TEXT, Split, split_source, whole_source
from vaekit.data.tables import settings_like_run
from vaekit.data.text import tokenized
from vaekit.errors import UserError
from vaekit.model import latent_paths
from vaekit.model.objectives import gaussian_kl
from vaekit.runs.directory import load_model, read_metrics, read_results
from vaekit.runs.labels import RunLabels
from vaekit.runs.sentences import TrainedSentences
from vaekit.runtime.device import resolve_device


def check_units(x: np.ndarray, pixels: bool) -> np.ndarray:
    """`x` as a run takes it, or a UserError saying which units it expects: for an image run (`pixels`) uint8
    pixels 0..255 (other integers within 0..255 pass as such), never floats, whose scale, [0, 1] or 0..255,
    cannot be told; for a table or array run finite numbers in the data's own units."""
    if pixels and x.dtype != np.uint8:
        integers = np.issubdtype(x.dtype, np.integer)
        if integers and (x.size == 0 or 0 <= x.min() <= x.max() <= 255):
            return x.astype(np.uint8)
        given = f"{x.dtype} values from {x.min()} to {x.max()}" if integers and x.size else f"{x.dtype} values"
        raise UserError(
            f"this run takes images as uint8 pixels 0..255, as `sample` returns them, not {given}; "
            "for values in [0, 1] pass (x * 255).round().astype(np.uint8)"
        )
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_):
        raise UserError(f"this run takes numbers in the units of its data, not {x.dtype} values")
    if not pixels and not np.isfinite(x).all():
        raise UserError(
            f"{np.count_nonzero(~np.isfinite(x))} of the {x.size} values given are NaN or infinite; this run "
            "takes finite numbers in the units of its data"
        )
    return x


class TrainedVAE:
    """A trained run loaded from its directory; every method takes and returns data in source units: an image
    run's images as uint8 pixels 0..255 (floats are refused), a table's or array's values as finite numbers."""

    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.model, self.config, self.data = load_model(self.run_dir, self.device)
        self.codec = self.data.make_codec()
        self.labels = RunLabels(self.run_dir, self.data.class_names, self.model.classes, self.device)
        self.conditional = self.labels.conditional  # q(z|x, y), p(x|z, y): label-taking methods need labels
        # A text run speaks lines of text (`run.text.sample(5)`); the methods here take arrays
        self.text = TrainedSentences(self.model, self.codec, self.device) if self.data.kind == TEXT else None

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.run_dir)

    @property
    def results(self) -> dict[str, Any] | None:
        return read_results(self.run_dir)

    def _to_model(self, x: np.ndarray) -> torch.Tensor:
        """Inputs (N, *event_shape) in the data's units (`check_units`) to the model's, on the device."""
        self._check_arrays()
        x = np.asarray(x)
        if tuple(x.shape[1:]) != self.data.event_shape:
            raise UserError(
                f"data of shape {tuple(x.shape[1:])} per example does not fit this run, which was trained on "
                f"{self.data.event_shape} ({self.data.description})"
            )
        x = check_units(x, isinstance(self.codec, PixelCodec))
        return self.codec.to_model(torch.as_tensor(x).to(self.device))

    def _check_arrays(self) -> None:
        """A text run's model speaks lines of text, through `self.text`, not arrays."""
        if self.text is not None:
            raise UserError(f"{self.run_dir}: models text, and speaks lines of text: use run.text.sample(count), "
                            "run.text.encode(lines), run.text.reconstruct(lines), run.text.interpolate(a, b)")

    def to_data(self, values: torch.Tensor) -> np.ndarray:
        """Model units (N, *event_shape) back to the data's own (pixels, the table's units)."""
        return self.codec.from_model(values).cpu().numpy()

    def load_inputs(
        self, source: str | None = None, split: str | None = None, **data_settings: Any
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Examples (stored form) and labels from the run's own data or another `source` read alike.

        `split` is train, validation, test or all; by default the test split of the run's own data
        or of a source with its own test files, else all of a new source.
        """
        chosen, _ = self.load_split(source, split, **data_settings)
        return chosen.x, chosen.y

    def load_split(
        self, source: str | None = None, split: str | None = None, **data_settings: Any
    ) -> tuple[Split, tuple[str, ...] | None]:
        """As `load_inputs`, with where each example came from (`Split.rows`, `Split.names`) and the
        names of the source's classes (label index -> name)."""
        data_config = self.config.data
        if source is not None or data_settings:
            data_config = replace(data_config, **({"source": source, "data_format": "auto"} if source else {}),
                                  **data_settings)
        if source is not None:
            data_config = self._read_like_run(data_config, data_settings)
        raw = read_source(data_config)
        split = split or ("test" if source is None or raw.test_x is not None else "all")
        codec = self.codec if self.text is not None else None  # text: read by the run's tokenizer, not a new one
        chosen = whole_source(raw) if split == "all" else getattr(split_source(raw, data_config, codec), split)
        if codec is not None and split == "all":
            chosen, _ = tokenized(chosen, codec)
        if tuple(chosen.x.shape[1:]) != self.data.event_shape:
            raise UserError(
                f"{raw.description}: examples of shape {tuple(chosen.x.shape[1:])} do not fit {self.run_dir}, which "
                f"was trained on {self.data.event_shape} ({self.data.description}); pass data like the run's"
            )
        return chosen, raw.class_names

    def _read_like_run(self, data_config: DataConfig, given: dict[str, Any]) -> DataConfig:
        """Read a new source as the run's data was read, unless the caller said otherwise: a CSV by the
        run's column names (so their order cannot mislead the model), an image folder in its channels,
        recordings at its rate and clip length."""
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
        if data_format == "audio" and self.data.audio is not None:  # the run's rate and clip length, so its STFT
            rate, samples = self.data.audio["sample_rate"], self.data.audio["samples"]
            return replace(data_config, sample_rate=rate, clip_seconds=samples / rate)
        return data_config

    @torch.no_grad()
    def encode(self, x: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """μ(x) and σ(x) of q(z|x) (q(z|x, y) of a conditional run, given the `labels` y), each (N, latent_dim),
        for inputs x in the data's units (uint8 pixels for images)."""
        loc, log_variance = self.model.encode(Batch(self._to_model(x), self.labels.tensor(labels, len(x), "encode")))
        return loc.cpu().numpy(), torch.exp(0.5 * log_variance).cpu().numpy()

    @torch.no_grad()
    def decode(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """E[x|z] (E[x|z, y] of a conditional run) for latent codes z (N, latent_dim), in data units."""
        self._check_arrays()
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device)
        return self.to_data(self.model.decode_mean(z, self.labels.tensor(labels, len(z), "decode")))

    @torch.no_grad()
    def reconstruct(self, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Decode the posterior mean of each input: x -> μ(x) -> E[x|z=μ(x)] (with its label y, for a
        conditional run), in data units."""
        y = self.labels.tensor(labels, len(x), "reconstruct")
        loc, _ = self.model.encode(Batch(self._to_model(x), y))
        return self.to_data(self.model.decode_mean(loc, y))

    @torch.no_grad()
    def convert(self, x: np.ndarray, labels: np.ndarray, to_labels: np.ndarray) -> np.ndarray:
        """Each input rendered as another class: z = μ(x, y) with its own label y, decoded with the target label
        y' (`to_labels`): E[x|z, y'], in data units. z holds what the label does not: the input's style."""
        if not self.conditional:
            raise UserError(f"{self.run_dir}: convert needs a conditional VAE (vaekit train --conditional); "
                            "this run models x alone")
        loc, _ = self.model.encode(Batch(self._to_model(x), self.labels.tensor(labels, len(x), "convert")))
        return self.to_data(self.model.decode_mean(loc, self.labels.tensor(to_labels, len(x), "convert")))

    @torch.no_grad()
    def sample(self, count: int, seed: int = 0, temperature: float = 1.0, stochastic: bool = False,
               labels: np.ndarray | None = None) -> np.ndarray:
        """Decode `count` draws z ~ N(0, T²I) (T = `temperature`; 1 is the prior p(z)), in data units: E[x|z],
        or with `stochastic` a draw x ~ p(x|z) (binary pixels for a Bernoulli model), which spreads as the
        data does. A conditional run decodes each with its class in `labels` (count,), by default the classes in
        turn (0, 1, ..., 0, 1, ...)."""
        self._check_arrays()
        if not temperature > 0:
            raise UserError(
                f"--temperature {temperature}: must be above 0 (1 draws from the prior, 0.5 nearer its mean)"
            )
        generator = torch.Generator(device=self.device).manual_seed(seed)
        z = temperature * torch.randn(count, self.model.latent_dim, generator=generator, device=self.device)
        if self.conditional and labels is None:
            labels = np.arange(count) % self.model.classes
        y = self.labels.tensor(labels, count, "sample")
        if not stochastic:
            return self.to_data(self.model.decode_mean(z, y))
        observation = self.model.observation_model(z, y).base_dist
        if isinstance(observation, torch.distributions.Normal):
            noise = torch.randn(observation.loc.shape, generator=generator, device=self.device)
            return self.to_data(observation.loc + observation.scale * noise)
        return self.to_data(torch.bernoulli(observation.probs, generator=generator))

    @torch.no_grad()
    def kl_per_dimension(self, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """The KL of each latent dimension, KL(q(zⱼ|x) ‖ p(zⱼ)) averaged over the inputs x: (D,) nats."""
        y = self.labels.tensor(labels, len(x), "the KL per dimension")
        loc, log_variance = self.model.encode(Batch(self._to_model(x), y))
        return gaussian_kl(loc, log_variance).mean(0).cpu().numpy()

    @torch.no_grad()
    def interpolate(self, x_from: np.ndarray, x_to: np.ndarray, steps: int = 10, path: str = "linear",
                    labels_from: np.ndarray | None = None, labels_to: np.ndarray | None = None,
                    label: int | None = None) -> np.ndarray:
        """Decode the path between the posterior means of x_from[i] and x_to[i]: (N, steps, *event_shape),
        both ends included, in data units; `path` is linear or slerp (along the great circle). A conditional
        run encodes each end with its own label and decodes the path with `label`, by default the start's."""
        latent_paths.check_path(path, steps)
        starts = Batch(self._to_model(x_from), self.labels.tensor(labels_from, len(x_from), "interpolate"))
        ends = Batch(self._to_model(x_to), self.labels.tensor(labels_to, len(x_to), "interpolate"))
        (loc_from, _), (loc_to, _) = self.model.encode(starts), self.model.encode(ends)
        codes = latent_paths.interpolation(loc_from, loc_to, steps, path)  # (N, steps, D)
        decode_with = self.labels.decoding(label, len(x_from), labels_from)
        return self.to_data(self.model.decode_mean(codes, None if decode_with is None else decode_with[:, None]))

    @torch.no_grad()
    def traverse(self, x: np.ndarray | None = None, dims: list[int] | None = None, steps: int = 11,
                 span: float = 3.0, posterior_scale: bool = False, labels: np.ndarray | None = None,
                 label: int | None = None) -> np.ndarray:
        """Sweep each of `dims` (default all) from −span to +span standard deviations around a base code, the
        other dimensions held: (len(dims), steps, *event_shape). The base is μ(x) of one input x (1, ...), or
        without x the prior's mean 0; the step is the prior's standard deviation 1, or with `posterior_scale`
        the posterior's σ(x) of that input (a much smaller sweep: how sure the encoder is). A conditional run
        encodes x with its `labels` and decodes with `label`, by default x's own (or class 0)."""
        self._check_arrays()
        dims = list(range(self.model.latent_dim)) if dims is None else self._check_dims(dims, "--dims")
        base = torch.zeros(self.model.latent_dim, device=self.device)
        scales = torch.ones_like(base)
        if x is not None:
            inputs = Batch(self._to_model(x), self.labels.tensor(labels, len(x), "traverse"))
            loc, log_variance = self.model.encode(inputs)
            base = loc[0]
            scales = torch.exp(0.5 * log_variance[0]) if posterior_scale else scales
        elif posterior_scale:
            raise UserError("--posterior-scale needs an input to take σ(x) from: pass --index I")
        codes = latent_paths.traversal(base, scales, dims, steps, span)  # (dims, steps, D)
        decode_with = self.labels.decoding(label, 1, None if x is None or labels is None else labels[:1])
        return self.to_data(self.model.decode_mean(codes, decode_with))

    @torch.no_grad()
    def manifold(self, grid: int = 20, dims: tuple[int, int] = (0, 1), label: int | None = None) -> np.ndarray:
        """Decode a grid × grid of codes over two latent dimensions through the inverse Gaussian CDF, the rest
        at 0 (Kingma & Welling's Figure 4): (grid, grid, *event_shape) in data units; a conditional run's with
        `label` (default class 0)."""
        self._check_arrays()
        if self.model.latent_dim < 2:
            raise UserError(f"{self.run_dir}: a manifold needs 2 latent dimensions, and this run has 1")
        first, second = self._check_dims(list(dims), "--dims")
        if first == second or grid < 2:
            raise UserError(
                f"--dims {first},{second} --grid {grid}: pick two different dimensions and a grid of 2 or more"
            )
        codes = latent_paths.manifold(self.model.latent_dim, grid, (first, second), self.device)
        return self.to_data(self.model.decode_mean(codes, self.labels.decoding(label, 1)))

    @torch.no_grad()
    def latents(self, x: np.ndarray, method: str = "pca", seed: int = 0,
                labels: np.ndarray | None = None) -> tuple[np.ndarray, tuple[str, str]]:
        """The posterior means μ(x) in two dimensions (N, 2) and the axes' names: as they are for D ≤ 2, else
        by PCA or t-SNE (`method`, seeded by `seed`). A conditional run encodes with the `labels`; a text run
        takes its lines as token ids, as `load_inputs` reads them."""
        loc = self.text.encode_ids(x) if self.text is not None else self.encode(x, labels)[0]
        return latent_paths.project(loc, method, seed)

    def _check_dims(self, dims: list[int], flag: str) -> list[int]:
        latent_dim = self.model.latent_dim
        wrong = [d for d in dims if not 0 <= d < latent_dim]
        if wrong:
            listed = ",".join(map(str, dims))
            raise UserError(f"{flag} {listed}: this run's latent dimensions are 0 to {latent_dim - 1}")
        return list(dims)
