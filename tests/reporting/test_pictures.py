"""Pictures: the loss curve's axes, and grids refused before they grow past what can be opened again."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from vaekit.errors import UserError
from vaekit.reporting.pictures import MAX_GRID_PICTURES, check_grid, grid_shape, image_grid, loss_curve_figure


def metrics(epochs: int) -> list[dict]:
    return [{"epoch": e, "train_elbo": -250 + 10 / e, "val_elbo": -252 + 10 / e, "val_kl": 20 + e / 10}
            for e in range(1, epochs + 1)]


def test_the_loss_axis_fits_the_curves_and_counts_whole_epochs():
    figure = loss_curve_figure(metrics(3))
    try:
        loss_axis = figure.axes[0]
        low, high = loss_axis.get_ylim()
        assert 239 < low < 240 and 248.7 < high < 250  # the −ELBO curves span 240..248.7; the KL is at 20
        ticks = [t for t in loss_axis.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert figure.axes[1].get_ylim()[0] > 19  # the KL has an axis of its own
        assert [t.get_text() for t in loss_axis.get_legend().get_texts()] == [
            "train −ELBO", "validation −ELBO", "validation KL"]
    finally:
        plt.close(figure)


def test_a_grid_reports_the_size_it_draws():
    assert image_grid(np.zeros((10, 1, 8, 8), np.uint8), 4).size[::-1] == grid_shape(10, 8, 8, 4)[:2]


def test_a_grid_too_large_is_refused_with_the_forms_that_hold_it(tmp_path):
    check_grid(tmp_path / "ok.png", MAX_GRID_PICTURES, 8, 8, 8)
    with pytest.raises(UserError, match=r"big.png: a PNG grid holds at most 1,024 pictures, not 100,000; write "):
        check_grid(tmp_path / "big.png", 100_000, 8, 8, 8)
    assert Image.MAX_IMAGE_PIXELS is not None  # large pictures: Pillow's own limit applies before the count's
    with pytest.raises(UserError, match="a grid of 64 pictures of 2000x2000 would be .* more than Pillow opens"):
        check_grid(tmp_path / "big.png", 64, 2000, 2000, 8)


def test_sample_refuses_a_png_grid_pillow_could_not_open(cli, digits_run, tmp_path):
    result = cli("sample", digits_run, "--n", "100000", "--out", tmp_path / "big.png")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert ".npy" in result.err and not (tmp_path / "big.png").exists()
    assert cli("sample", digits_run, "--n", "2000", "--out", tmp_path / "big.npy").code == 0
