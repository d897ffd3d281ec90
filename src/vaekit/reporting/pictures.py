"""PNG pictures a person can look at: image grids and the loss curve, each written atomically
(a temporary sibling renamed over the old file, vaekit.runs.files), never half a picture."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vaekit.errors import UserError
from vaekit.runs.files import atomic_write_bytes

MIN_CELL_PIXELS = 56  # small images (8x8 digits) are enlarged so that a grid is viewable at 100%
GRID_GAP = 2
# Beyond a thousand pictures a grid is no longer looked at, and far sooner than Pillow's own limit on the pixels
# of an image it opens (Image.MAX_IMAGE_PIXELS, 89M: a larger PNG is refused as a "decompression bomb").
MAX_GRID_PICTURES = 1024


def grid_shape(count: int, height: int, width: int, columns: int | None = None) -> tuple[int, int, int]:
    """(canvas height, canvas width, enlargement) of a grid of `count` pictures of height x width."""
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    scale = max(1, math.ceil(MIN_CELL_PIXELS / max(height, width)))
    return rows * (height * scale + GRID_GAP) + GRID_GAP, columns * (width * scale + GRID_GAP) + GRID_GAP, scale


def check_grid(path: Path, count: int, height: int, width: int, columns: int | None = None) -> None:
    """Refuse a grid too large to look at or to open again, suggesting the forms that hold any number."""
    canvas_h, canvas_w, _ = grid_shape(count, height, width, columns)
    most = Image.MAX_IMAGE_PIXELS or math.inf
    path = Path(path)
    instead = f"write {path.with_suffix('.npy')} or a folder of PNGs ({path.with_suffix('')}/) instead"
    if count > MAX_GRID_PICTURES:
        raise UserError(f"{path}: a PNG grid holds at most {MAX_GRID_PICTURES:,} pictures, not {count:,}; {instead}")
    if canvas_h * canvas_w > most:
        raise UserError(
            f"{path}: a grid of {count:,} pictures of {height}x{width} would be {canvas_w:,}x{canvas_h:,} pixels, "
            f"more than Pillow opens ({most:,}); {instead}"
        )


def image_grid(images: np.ndarray, columns: int | None = None) -> Image.Image:
    """Tile uint8 images (N, C, H, W), C in {1, 3}, into one picture with a thin grey gap."""
    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    canvas_h, canvas_w, scale = grid_shape(count, height, width, columns)
    cell_h, cell_w = height * scale, width * scale
    canvas = np.full((canvas_h, canvas_w, 3), 128, np.uint8)
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


def pyplot() -> Any:
    """matplotlib.pyplot on its file-only backend: no display, pictures are only ever written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(figure: Any, tight: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes (cropped to what it draws, if `tight`), and the figure closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **({"bbox_inches": "tight"} if tight else {}))
    pyplot().close(figure)
    return buffer.getvalue()


def save_figure(figure: Any, path: Path) -> None:
    """A matplotlib figure as a PNG file, and the figure closed."""
    atomic_write_bytes(Path(path), figure_png(figure, tight=False))


def save_image_grid(images: np.ndarray, path: Path, columns: int | None = None) -> None:
    save_png(image_grid(images, columns), path)


def save_reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray, path: Path, columns: int = 8) -> None:
    """Rows alternate: originals, then their reconstructions beneath them."""
    rows = []
    for start in range(0, len(originals), columns):
        rows += [originals[start : start + columns], reconstructions[start : start + columns]]
    save_image_grid(np.concatenate(rows), path, columns)


def save_loss_curve(metrics: list[dict[str, Any]], path: Path, title: str = "") -> None:
    save_figure(loss_curve_figure(metrics, title), path)


def loss_curve_figure(metrics: list[dict[str, Any]], title: str = "") -> Any:
    """−ELBO per epoch for training and validation, in nats per example, on an axis fitted to them; the
    validation KL, a few nats where the −ELBO is tens or hundreds, on an axis of its own to the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    curves = [[-m["train_elbo"] for m in metrics]]
    lines = axis.plot(epochs, curves[0], label="train −ELBO")
    if metrics and "val_elbo" in metrics[0]:
        curves.append([-m["val_elbo"] for m in metrics])
        lines += axis.plot(epochs, curves[1], label="validation −ELBO")
        kl_axis = axis.twinx()
        lines += kl_axis.plot(epochs, [m["val_kl"] for m in metrics], label="validation KL", linestyle="--",
                              color="tab:green")
        kl_axis.set_ylabel("validation KL, nats per example")
    axis.set_ylim(*_fitted_range([value for curve in curves for value in curve]))
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axis.set_xlabel("epoch")
    axis.set_ylabel("−ELBO, nats per example")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(lines, [line.get_label() for line in lines])
    figure.tight_layout()
    return figure


def _fitted_range(values: list[float], margin: float = 0.05) -> tuple[float, float]:
    """The span of the values with a margin on either side (a flat curve gets one of its own)."""
    low, high = min(values, default=0.0), max(values, default=1.0)
    pad = (high - low) * margin or max(abs(high), 1.0) * margin
    return low - pad, high + pad
