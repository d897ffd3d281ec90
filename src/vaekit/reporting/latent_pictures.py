"""Pictures of the latent space, as PNG bytes: interpolations, traversals, the 2-D manifold, the codes by
label and the KL of each dimension. The CLI writes them to files, the report embeds them.

Image runs get grids of decoded images; table and array runs line plots per column (and CSV, from
`latent_csv`), in the data's own units.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from vaekit.reporting.outputs import HISTOGRAM_COLUMNS, as_pixels, csv_text, drawable
from vaekit.reporting.pictures import figure_png, image_grid, png_bytes, pyplot
from vaekit.runs.directory import DataInfo

CELL_INCHES = 0.55  # a decoded image in a labelled grid: small enough for 20 x 20, large enough to see


def labelled_grid(images: np.ndarray, data: DataInfo, row_labels: list[str], column_labels: list[str],
                  title: str) -> bytes:
    """Examples (rows, columns, *event_shape) in data units as one picture with its rows and columns named."""
    rows, columns = images.shape[:2]
    grid = np.asarray(image_grid(as_pixels(images.reshape(rows * columns, *images.shape[2:]), data), columns))
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(4.0, CELL_INCHES * columns + 1.5), max(2.0, CELL_INCHES * rows + 0.8)))
    if grid.ndim == 2:  # grey
        grid = np.repeat(grid[..., None], 3, axis=-1)
    # As opaque RGBA bytes: matplotlib draws them without converting the picture to floats first, which for the
    # report's 15 × 15 manifold of Fashion-MNIST took 70 MB instead of 34 (the run's peak memory)
    opaque = np.concatenate([grid[..., :3], np.full((*grid.shape[:2], 1), 255, np.uint8)], axis=-1)
    axis.imshow(opaque, interpolation="nearest")
    height, width = grid.shape[0] / rows, grid.shape[1] / columns
    axis.set_yticks([height * (i + 0.5) for i in range(rows)], row_labels, fontsize=8)
    axis.set_xticks([width * (j + 0.5) for j in range(columns)], column_labels, fontsize=7)
    axis.tick_params(length=0)
    for side in axis.spines.values():
        side.set_visible(False)
    axis.set_title(title, fontsize=9)
    return figure_png(figure)


def line_plots(series: np.ndarray, data: DataInfo, row_labels: list[str], x_values: np.ndarray, x_label: str,
               title: str) -> bytes:
    """Examples (rows, steps, *event_shape) as one panel per value (the first HISTOGRAM_COLUMNS of a flattened
    example), a line per row, in the data's units."""
    series = series.reshape(*series.shape[:2], -1)
    names = list(data.columns) if data.columns else [f"x{i}" for i in range(series.shape[-1])]
    shown = min(len(names), HISTOGRAM_COLUMNS)
    plt = pyplot()
    grid = int(np.ceil(np.sqrt(shown)))
    figure, axes = plt.subplots(int(np.ceil(shown / grid)), grid, figsize=(3.2 * grid, 2.4 * np.ceil(shown / grid)),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        if index >= shown:
            axis.axis("off")
            continue
        for row, label in enumerate(row_labels):
            axis.plot(x_values, series[row, :, index], label=label, linewidth=1)
        axis.set_title(names[index], fontsize=9)
        axis.set_xlabel(x_label, fontsize=7)
        axis.tick_params(labelsize=7)
    if len(row_labels) <= 10:
        axes.flat[0].legend(fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure_png(figure)


def interpolation_png(starts: np.ndarray, paths: np.ndarray, ends: np.ndarray, data: DataInfo, pairs: list[str],
                      path: str) -> bytes:
    """One row per pair: the first input, the decoded path (N, steps, ...), the second input."""
    steps = paths.shape[1]
    title = f"{path} interpolation between posterior means; first and last columns: the inputs themselves"
    if drawable(data):
        rows = np.concatenate([starts[:, None], paths, ends[:, None]], axis=1)
        columns = ["input", *[f"{t:.2f}" for t in np.linspace(0, 1, steps)], "input"]
        return labelled_grid(rows, data, pairs, columns, title)
    return line_plots(paths, data, pairs, np.linspace(0, 1, steps), "t along the path", title)


def traversal_png(rows: np.ndarray, data: DataInfo, dims: list[int], kl: np.ndarray, threshold: float,
                  span: float, base: str) -> bytes:
    """One row per latent dimension (rows (dims, steps, ...)), labelled with its KL; inactive ones marked."""
    labels = [f"z{d}  KL {kl[d]:.2f}" + ("" if kl[d] > threshold else " (inactive)") for d in dims]
    offsets = np.linspace(-span, span, rows.shape[1])
    title = f"each latent dimension from -{span:g} to +{span:g} standard deviations around {base}, by KL"
    title += "" if "σ" in base else " (the prior's σ = 1)"
    if drawable(data):
        return labelled_grid(rows, data, labels, [f"{o:+.1f}" for o in offsets], title)
    return line_plots(rows, data, labels, offsets, "standard deviations from the base code", title)


def manifold_png(images: np.ndarray, data: DataInfo, dims: tuple[int, int]) -> bytes:
    """The grid (grid, grid, *event_shape) as one picture, its axes the two dimensions' prior quantiles."""
    grid = images.shape[0]
    quantiles = [f"{q:.2f}" for q in np.linspace(0.05, 0.95, grid)]
    title = (f"decoded z over z{dims[0]} (down, high to low) and z{dims[1]} (across), the rest 0: "
             "equal steps of the prior's quantiles")
    return labelled_grid(images, data, quantiles[::-1], quantiles, title)


def latent_scatter_png(codes: np.ndarray, labels: np.ndarray | None, class_names: tuple[str, ...] | None,
                       axis_names: tuple[str, str], title: str) -> bytes:
    """μ(x) in two dimensions (N, 2), coloured by label with a legend of class names (a note without labels)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    if labels is None:
        axis.scatter(codes[:, 0], codes[:, 1], s=6, alpha=0.6)
        title += "\n(the data has no labels: one colour)"
    else:
        for value in np.unique(labels):
            chosen = labels == value
            name = class_names[value] if class_names and 0 <= value < len(class_names) else str(value)
            axis.scatter(codes[chosen, 0], codes[chosen, 1], s=6, alpha=0.7, label=name)
        axis.legend(fontsize=7, markerscale=2, loc="best", ncol=2 if len(np.unique(labels)) > 6 else 1)
    axis.set_xlabel(axis_names[0])
    axis.set_ylabel(axis_names[1])
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    return figure_png(figure)


def kl_png(kl: np.ndarray, threshold: float) -> bytes:
    """A bar per latent dimension: its KL in nats, active ones coloured."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(4.0, 0.3 * len(kl) + 1.5), 3.0))
    colours = ["tab:blue" if value > threshold else "lightgrey" for value in kl]
    axis.bar(range(len(kl)), kl, color=colours)
    axis.set_xlabel("latent dimension")
    axis.set_ylabel("KL (nats)")
    active = int((kl > threshold).sum())
    axis.set_title(f"KL of each latent dimension: {active} of {len(kl)} above {threshold:g} nats (coloured)",
                   fontsize=9)
    return figure_png(figure)


def latent_csv(series: np.ndarray, data: DataInfo, keys: dict[str, np.ndarray]) -> str:
    """Flat examples (rows, steps, columns) as CSV rows in the data's units, each led by its `keys` (rows, steps)."""
    flat = series.reshape(-1, series.shape[-1])
    columns = data.columns or tuple(f"x{i}" for i in range(flat.shape[1]))
    table = csv_text(flat, columns)
    lines = table.splitlines()
    names = list(keys)
    values = [np.asarray(keys[name]).reshape(-1) for name in names]
    header = ",".join(names) + "," + lines[0]
    body = [",".join(str(v[i]) for v in values) + "," + line for i, line in enumerate(lines[1:])]
    return "\n".join([header, *body]) + "\n"


def as_png_image(png: bytes) -> Any:
    """PNG bytes back into a Pillow image (for tests and thumbnails)."""
    from PIL import Image

    return Image.open(io.BytesIO(png))


__all__ = ["interpolation_png", "kl_png", "latent_csv", "latent_scatter_png", "manifold_png", "png_bytes",
           "traversal_png"]

