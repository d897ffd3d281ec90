"""The pictures a finished run leaves for a person to look at: the loss curve, and samples and
reconstructions (pictures), samples.csv and histograms per column (tables), or samples.txt and
reconstructions.txt (text)."""

from __future__ import annotations

import numpy as np

from vaekit.data.source import TABLE, Splits
from vaekit.reporting.outputs import as_pixels, csv_text, drawable, save_column_histograms
from vaekit.reporting.pictures import save_image_grid, save_loss_curve, save_reconstruction_grid
from vaekit.runs.directory import DataInfo
from vaekit.runs.files import atomic_write_text
from vaekit.runs.trained import TrainedVAE

PICTURE_SAMPLES = 64
TEXT_SAMPLES, TEXT_RECONSTRUCTIONS = 20, 20  # lines of samples.txt and pairs of reconstructions.txt
PICTURE_RECONSTRUCTIONS = 32
PICTURE_TABLE_ROWS = 1000  # enough rows for a histogram per column to be smooth
WIDEST_PICTURED_ARRAY = 64  # flat arrays wider than this are not tables a person reads (e.g. flattened images)


def write_pictures(run: TrainedVAE, splits: Splits) -> None:
    """loss.png, and what a person can look at: samples.png and reconstructions.png for pictures;
    samples.csv and histograms.png (data against samples, per column) for tables and flat arrays."""
    save_loss_curve(run.metrics, run.run_dir / "loss.png", title=run.data.description)
    if run.text is not None:
        _write_sentences(run, splits)
    elif drawable(run.data):
        samples = as_pixels(run.sample(PICTURE_SAMPLES, seed=run.config.train.seed), run.data)
        save_image_grid(samples, run.run_dir / "samples.png", columns=8)
        originals = np.asarray(splits.test.x[:PICTURE_RECONSTRUCTIONS])  # decodes them, if the folder streams
        labels = None if splits.test.y is None else np.asarray(splits.test.y[:PICTURE_RECONSTRUCTIONS])
        reconstructions = run.reconstruct(originals, labels)
        save_reconstruction_grid(as_pixels(originals, run.data), as_pixels(reconstructions, run.data),
                                 run.run_dir / "reconstructions.png")
    elif _is_readable_table(run.data):
        samples = run.sample(PICTURE_TABLE_ROWS, seed=run.config.train.seed, stochastic=True)
        atomic_write_text(run.run_dir / "samples.csv", csv_text(samples, run.data.columns))
        save_column_histograms(splits.train.x, samples, run.data.columns, run.run_dir / "histograms.png",
                               title=f"{run.data.description}: data and samples x ~ p(x|z)")


def _write_sentences(run: TrainedVAE, splits: Splits) -> None:
    """samples.txt: sentences decoded greedily from z ~ p(z); reconstructions.txt: test lines and theirs."""
    samples = run.text.sample(TEXT_SAMPLES, seed=run.config.train.seed)
    atomic_write_text(run.run_dir / "samples.txt", "".join(f"{line}\n" for line in samples))
    lines = run.codec.decode(np.asarray(splits.test.x[:TEXT_RECONSTRUCTIONS]))
    pairs = run.text.reconstruct(lines) if lines else []
    atomic_write_text(run.run_dir / "reconstructions.txt",
                      "".join(f"input:          {given}\nreconstruction: {output}\n\n" for given, output in pairs))


def _is_readable_table(data: DataInfo) -> bool:
    narrow = len(data.event_shape) == 1 and data.event_shape[0] <= WIDEST_PICTURED_ARRAY
    return data.kind == TABLE or narrow
