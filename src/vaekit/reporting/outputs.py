"""Write generated or reconstructed examples in the source's own form: PNG, .npy or CSV.

Images go to a PNG grid (`out.png`) or to one PNG per example (`out/`, a folder name without a
suffix); sound to one WAV per example (`out/`) or a PNG grid of spectrograms; tables to CSV with their own
column names; anything to `.npy`. Every file is written
to a temporary sibling and renamed, so an interrupted write never leaves half a file behind.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

from vaekit.data.source import ARRAY, AUDIO, IMAGE
from vaekit.errors import UserError
from vaekit.reporting.pictures import check_grid, image_grid, png_bytes, save_figure, save_reconstruction_grid
from vaekit.reporting.sounds import spectrogram_pixels, write_wav_folder
from vaekit.runs.directory import DataInfo
from vaekit.runs.files import atomic_write_bytes, atomic_write_folder, atomic_write_text

FORMATS = (".png", ".npy", ".csv", "")  # "" is a folder of PNG files (of WAV files for sound)
NUMBERED_PNG = re.compile(r"\d+\.(png|wav)")  # the names _write_png_folder and write_wav_folder give
HISTOGRAM_COLUMNS = 16  # more panels than this are unreadable in one picture
HISTOGRAM_BINS = 30


def drawable(data: DataInfo) -> bool:
    """Whether examples can be drawn: image sources, or arrays of pictures (C, H, W) / (H, W) in [0, 1]."""
    if data.kind in (IMAGE, AUDIO):  # sound as its spectrograms
        return True
    shape = data.event_shape
    picture_like = len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))
    return data.kind == ARRAY and picture_like and data.codec.get("type") == "identity"


def as_pixels(examples: np.ndarray, data: DataInfo) -> np.ndarray:
    """(N, C, H, W) uint8 for PNG: image data as it is, values in [0, 1] scaled to 0..255, spectrograms
    with low frequencies at the bottom."""
    if data.kind == AUDIO:
        return spectrogram_pixels(examples)
    if examples.dtype != np.uint8:
        examples = np.rint(np.clip(examples, 0.0, 1.0) * 255).astype(np.uint8)
    return examples[:, None] if len(data.event_shape) == 2 else examples


def _check_format(path: Path, data: DataInfo) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(
            f"{path}: unknown output type {suffix}; use .png (images, spectrograms), .npy, .csv (tables) or a folder "
            "name (of PNG or, for sound, WAV files)"
        )
    if suffix in (".png", "") and not drawable(data):
        raise UserError(f"{path}: this run models {data.kind} data of shape {data.event_shape}, which cannot be "
                        "drawn as PNG; use .csv or .npy")
    if suffix == ".csv" and len(data.event_shape) != 1:
        raise UserError(f"{path}: CSV holds one row per example of flat data; this run's examples are "
                        f"{data.event_shape}; use .npy")
    return suffix


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _cell(value: np.generic) -> str:
    # str() of a NumPy scalar is the shortest text that reads back to the same float32, e.g. 170.5.
    return str(value)


def csv_text(rows: np.ndarray, columns: tuple[str, ...] | None, labels: np.ndarray | None = None,
             label_column: str = "label") -> str:
    """One row per example under the table's own column names (x0, x1, ... for unnamed data)."""
    names = list(columns) if columns else [f"x{i}" for i in range(rows.shape[1])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(([label_column] if labels is not None else []) + names)
    for i, row in enumerate(rows):
        writer.writerow(([str(labels[i])] if labels is not None else []) + [_cell(v) for v in row])
    return buffer.getvalue()


def _check_replaceable(folder: Path) -> None:
    """--overwrite replaces a folder of numbered PNGs written before, never a folder holding anything else."""
    if not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; choose a new folder name for --out")
    foreign = [entry.name for entry in folder.iterdir() if not NUMBERED_PNG.fullmatch(entry.name)]
    if foreign:
        raise UserError(f"{folder}: holds other files (such as {foreign[0]}); choose a new folder for --out")


def _write_png_folder(folder: Path, pixels: np.ndarray) -> None:
    """One PNG per example, 00000.png, ..., written to a hidden sibling and renamed into place whole."""
    if folder.exists():
        _check_replaceable(folder)
    digits = max(5, len(str(len(pixels) - 1)))
    atomic_write_folder(folder, ((f"{i:0{digits}d}.png", _png_of(picture)) for i, picture in enumerate(pixels)))


def _png_of(picture: np.ndarray) -> bytes:
    """One (C, H, W) uint8 picture as PNG: grey for one channel, RGB for three."""
    return png_bytes(Image.fromarray(picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0)))


def write_examples(path: Path, examples: np.ndarray, data: DataInfo, columns_per_row: int = 8,
                   lengths: np.ndarray | None = None) -> None:
    """Generated examples (N, *event_shape) in data units, as a PNG grid or folder, .npy array or CSV table;
    sound as WAV files, cut to `lengths` (samples) where given."""
    path = Path(path)
    suffix = _check_format(path, data)
    if suffix == ".png":
        check_grid(path, len(examples), *as_pixels(examples[:1], data).shape[2:], columns_per_row)
        atomic_write_bytes(path, png_bytes(image_grid(as_pixels(examples, data), columns_per_row)))
    elif suffix == "" and data.kind == AUDIO:
        if path.exists():
            _check_replaceable(path)
        write_wav_folder(path, examples, data, lengths)
    elif suffix == "":
        _write_png_folder(path, as_pixels(examples, data))
    elif suffix == ".npy":
        atomic_write_bytes(path, _npy_bytes(examples))
    else:
        atomic_write_text(path, csv_text(examples, data.columns))


def write_reconstructions(path: Path, originals: np.ndarray, reconstructions: np.ndarray, data: DataInfo,
                          columns_per_row: int = 8, lengths: np.ndarray | None = None) -> None:
    """Reconstructions beside their originals (PNG grid: alternating rows) or alone (folder, .npy, CSV; WAVs cut
    to the recordings' `lengths`)."""
    path = Path(path)
    if _check_format(path, data) != ".png":
        write_examples(path, reconstructions, data, lengths=lengths)
        return
    check_grid(path, 2 * len(originals), *as_pixels(originals[:1], data).shape[2:], columns_per_row)
    save_reconstruction_grid(as_pixels(originals, data), as_pixels(reconstructions, data), path, columns_per_row)


def save_column_histograms(data: np.ndarray, samples: np.ndarray, columns: tuple[str, ...] | None,
                           path: Path, title: str = "") -> None:
    """Per-column histograms of the data (N, columns) against model samples, in the table's units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(columns) if columns else [f"x{i}" for i in range(data.shape[1])]
    shown = min(len(names), HISTOGRAM_COLUMNS)
    grid = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / grid)
    figure, axes = plt.subplots(rows, grid, figsize=(3 * grid, 2.4 * rows), dpi=100, squeeze=False)
    for i, axis in enumerate(axes.flat):
        if i >= shown:
            axis.axis("off")
            continue
        edges = np.histogram_bin_edges(np.concatenate([data[:, i], samples[:, i]]), bins=HISTOGRAM_BINS)
        axis.hist(data[:, i], bins=edges, density=True, alpha=0.5, label="data")
        axis.hist(samples[:, i], bins=edges, density=True, alpha=0.5, label="samples")
        axis.set_title(names[i], fontsize=9)
        axis.tick_params(labelsize=7)
        axis.set_yticks([])  # densities of different units say nothing to a reader; the shapes do
    axes.flat[0].legend(fontsize=7)
    more = f" (first {shown} of {len(names)} columns)" if shown < len(names) else ""
    figure.suptitle(f"{title}{more}", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
