"""Write generated or reconstructed examples in the source's own form: PNG, .npy or CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from vaekit.checkpoint import atomic_write_bytes, atomic_write_text
from vaekit.data.source import IMAGE
from vaekit.errors import UserError
from vaekit.pictures import image_grid, save_reconstruction_grid
from vaekit.run import DataInfo

FORMATS = (".png", ".npy", ".csv")


def _check_format(path: Path, data: DataInfo) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path}: unknown output type {suffix or '(none)'}; use .png (images), .npy or .csv (tables)")
    if suffix == ".png" and data.kind != IMAGE:
        raise UserError(f"{path}: this run models {data.kind} data, which cannot be drawn as PNG; use .csv or .npy")
    if suffix == ".csv" and len(data.event_shape) != 1:
        raise UserError(f"{path}: CSV holds one row per example of flat data; this run's examples are {data.event_shape}; use .npy")
    return suffix


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def csv_text(rows: np.ndarray, columns: tuple[str, ...] | None, labels: np.ndarray | None = None) -> str:
    names = list(columns) if columns else [f"x{i}" for i in range(rows.shape[1])]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow((["label"] if labels is not None else []) + names)
    for i, row in enumerate(rows):
        cells = [repr(float(v)) if not isinstance(v, (np.integer, int)) else str(v) for v in row]
        writer.writerow(([str(labels[i])] if labels is not None else []) + cells)
    return buffer.getvalue()


def write_examples(path: Path, examples: np.ndarray, data: DataInfo, columns_per_row: int = 8) -> None:
    """Generated examples (N, *event_shape) in data units, as a PNG grid, .npy array or CSV table."""
    path = Path(path)
    suffix = _check_format(path, data)
    if suffix == ".png":
        buffer = io.BytesIO()
        image_grid(examples, columns_per_row).save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix == ".npy":
        atomic_write_bytes(path, _npy_bytes(examples))
    else:
        atomic_write_text(path, csv_text(examples, data.columns))


def write_reconstructions(path: Path, originals: np.ndarray, reconstructions: np.ndarray, data: DataInfo) -> None:
    """Reconstructions beside their originals (PNG: alternating rows) or alone (.npy, CSV)."""
    path = Path(path)
    if _check_format(path, data) == ".png":
        temporary = path.with_name(f".{path.name}.tmp.png")
        save_reconstruction_grid(originals, reconstructions, temporary)
        temporary.replace(path)
    else:
        write_examples(path, reconstructions, data)
