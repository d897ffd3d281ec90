"""PNG pictures a person can look at: image grids and the loss curve, each written atomically
(a temporary sibling renamed over the old file, vaekit.runs.files), never half a picture."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vaekit.runs.files import atomic_write_bytes

MIN_CELL_PIXELS = 56  # small images (8x8 digits) are enlarged so that a grid is viewable at 100%
GRID_GAP = 2


def image_grid(images: np.ndarray, columns: int | None = None) -> Image.Image:
    """Tile uint8 images (N, C, H, W), C in {1, 3}, into one picture with a thin grey gap."""
    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    scale = max(1, math.ceil(MIN_CELL_PIXELS / max(height, width)))
    cell_h, cell_w = height * scale, width * scale
    canvas = np.full(
        (rows * (cell_h + GRID_GAP) + GRID_GAP, columns * (cell_w + GRID_GAP) + GRID_GAP, 3), 128, np.uint8
    )
    for i, image in enumerate(images):
        tile = np.repeat(np.repeat(image.transpose(1, 2, 0), scale, 0), scale, 1)
        if channels == 1:
            tile = np.repeat(tile, 3, axis=2)
        top = GRID_GAP + (i // columns) * (cell_h + GRID_GAP)
        left = GRID_GAP + (i % columns) * (cell_w + GRID_GAP)
        canvas[top : top + cell_h, left : left + cell_w] = tile
    return Image.fromarray(canvas)


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(picture: Image.Image, path: Path) -> None:
    atomic_write_bytes(Path(path), png_bytes(picture))


def save_figure(figure: Any, path: Path) -> None:
    """A matplotlib figure as a PNG file, and the figure closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_image_grid(images: np.ndarray, path: Path, columns: int | None = None) -> None:
    save_png(image_grid(images, columns), path)


def save_reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray, path: Path, columns: int = 8) -> None:
    """Rows alternate: originals, then their reconstructions beneath them."""
    rows = []
    for start in range(0, len(originals), columns):
        rows += [originals[start : start + columns], reconstructions[start : start + columns]]
    save_image_grid(np.concatenate(rows), path, columns)


def save_loss_curve(metrics: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """−ELBO per epoch for training and validation, in nats per example."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.plot(epochs, [-m["train_elbo"] for m in metrics], label="train −ELBO")
    if metrics and "val_elbo" in metrics[0]:
        axis.plot(epochs, [-m["val_elbo"] for m in metrics], label="validation −ELBO")
        axis.plot(epochs, [m["val_kl"] for m in metrics], label="validation KL", linestyle="--")
    axis.set_xlabel("epoch")
    axis.set_ylabel("nats per example")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)
