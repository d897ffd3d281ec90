"""The report's own plots, drawn with matplotlib to PNG bytes: the loss curves, a table's histograms, flat
arrays as lines."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.reporting.outputs import save_column_histograms
from vaekit.reporting.pictures import figure_png, pyplot
from vaekit.runs.trained import TrainedVAE

LOSS_PANELS = (("−ELBO", "elbo", -1.0), ("reconstruction −E[log p(x|z)]", "reconstruction", -1.0),
               ("KL(q(z|x) ‖ p(z))", "kl", 1.0))


def loss_png(metrics: list[dict[str, Any]], best_epoch: int | None) -> bytes:
    """Three panels (−ELBO, reconstruction, KL) of train and validation per epoch, the best epoch marked."""
    plt = pyplot()
    figure_, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    epochs = np.array([m["epoch"] for m in metrics])
    for axis, (title, key, sign) in zip(axes, LOSS_PANELS, strict=True):
        for split, style, name in (("train", "-", "train"), ("val", "--", "validation")):
            values = [sign * m[f"{split}_{key}"] if f"{split}_{key}" in m else np.nan for m in metrics]
            axis.plot(epochs, values, style, marker="." if len(epochs) < 30 else None, label=name)
        if axis is axes[0] and "val_iwae" in metrics[0]:  # an IWAE run: its bound beside the −ELBO
            axis.plot(epochs, [-m["val_iwae"] for m in metrics], ":", label="validation −IWAE bound")
        if best_epoch is not None:
            axis.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("nats per example", fontsize=8)
    axes[0].legend(fontsize=7)
    figure_.tight_layout()
    return figure_png(figure_)


def histograms_png(x: np.ndarray, samples: np.ndarray, run: TrainedVAE) -> bytes:
    # save_column_histograms draws to a file; a scratch folder keeps one drawing of the histograms
    with tempfile.TemporaryDirectory(prefix="vaekit-report-") as scratch:
        picture = Path(scratch) / "histograms.png"
        save_column_histograms(x, samples, run.data.columns, picture, title="data (test split) and samples")
        return picture.read_bytes()


def curves_png(series: list[tuple[str, np.ndarray]], title: str) -> bytes:
    """Flat examples (N, ...) as lines over their positions, one colour per example, one style per series."""
    plt = pyplot()
    figure_, axis = plt.subplots(figsize=(8, 3))
    for (name, values), style in zip(series, ("-", "--", ":"), strict=False):
        flat = values.reshape(len(values), -1)
        for index, row in enumerate(flat):
            axis.plot(row, style, color=f"C{index}", linewidth=1, label=f"{name} {index}")
    axis.set_xlabel("position in the flattened array", fontsize=8)
    axis.set_title(title, fontsize=9)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=6, ncol=len(series))
    figure_.tight_layout()
    return figure_png(figure_)
