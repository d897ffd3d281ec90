"""Outputs in the source's own form: PNG grids and folders, .npy arrays, CSV tables with their names."""

from __future__ import annotations

import csv
import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from vaekit.errors import UserError
from vaekit.reporting.outputs import (
    as_pixels,
    csv_text,
    drawable,
    save_column_histograms,
    write_examples,
    write_reconstructions,
)
from vaekit.runs.directory import DataInfo


def info(kind: str, shape: tuple[int, ...], codec: str = "standardize", columns=None) -> DataInfo:
    return DataInfo(description="test data", kind=kind, event_shape=shape, likelihood="gaussian",
                    codec={"type": codec}, counts={}, columns=columns)


IMAGES = info("image", (1, 4, 4), "pixels")
TABLE = info("table", (3,), columns=("height_cm", "weight_kg", "income"))


def test_csv_text_keeps_column_names_and_float32_values_exactly():
    rows = np.array([[170.1, 65.25, 51234.5], [1e-30, -2.5, 3e20]], dtype=np.float32)
    text = csv_text(rows, TABLE.columns)
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["height_cm", "weight_kg", "income"]
    assert table[1] == ["170.1", "65.25", "51234.5"]  # the shortest text, not 170.10000610351562
    assert np.array_equal(np.array(table[1:], dtype=np.float32), rows)


def test_csv_text_names_unnamed_columns_and_adds_labels():
    text = csv_text(np.zeros((2, 2), np.float32), None, labels=np.array([3, 4]), label_column="digit")
    assert text.splitlines() == ["digit,x0,x1", "3,0.0,0.0", "4,0.0,0.0"]


def test_images_go_to_a_png_grid(tmp_path):
    write_examples(tmp_path / "g.png", np.full((6, 1, 4, 4), 255, np.uint8), IMAGES, columns_per_row=3)
    picture = Image.open(tmp_path / "g.png")
    assert picture.format == "PNG" and picture.width > picture.height  # 3 columns, 2 rows


def test_images_go_to_a_folder_of_pngs(tmp_path):
    pixels = np.arange(3 * 16, dtype=np.uint8).reshape(3, 1, 4, 4)
    write_examples(tmp_path / "out", pixels, IMAGES)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "00002.png")), pixels[2, 0])
    write_examples(tmp_path / "out", pixels[:1], IMAGES)  # a folder written before may be replaced
    assert len(list((tmp_path / "out").iterdir())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_a_folder_of_pngs_has_the_permissions_mkdir_and_open_would_give(tmp_path):
    previous = os.umask(0o022)
    try:
        write_examples(tmp_path / "out", np.zeros((2, 1, 4, 4), np.uint8), IMAGES)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755  # not mkdtemp's 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()} == {0o644}


def test_a_folder_holding_other_files_is_never_replaced(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(UserError, match="holds other files"):
        write_examples(tmp_path / "photos", np.zeros((1, 1, 4, 4), np.uint8), IMAGES)
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"precious"


def test_tables_go_to_csv_and_anything_to_npy(tmp_path):
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_examples(tmp_path / "t.csv", rows, TABLE)
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "height_cm,weight_kg,income"
    write_examples(tmp_path / "t.npy", rows, TABLE)
    assert np.array_equal(np.load(tmp_path / "t.npy"), rows)


@pytest.mark.parametrize("name, data, message", [
    ("t.png", TABLE, "cannot be drawn as PNG; use .csv or .npy"),
    ("t", TABLE, "cannot be drawn as PNG"),
    ("t.csv", IMAGES, r"this run's examples are \(1, 4, 4\); use .npy"),
    ("t.jpg", IMAGES, "unknown output type .jpg"),
])
def test_forms_that_do_not_fit_the_data_are_refused(tmp_path, name, data, message):
    examples = np.zeros((2, *data.event_shape), np.float32)
    with pytest.raises(UserError, match=message):
        write_examples(tmp_path / name, examples, data)
    assert list(tmp_path.iterdir()) == []


def test_float_pictures_in_unit_range_are_drawable():
    assert drawable(info("array", (3, 5, 5), "identity")) and drawable(info("array", (5, 5), "identity"))
    assert not drawable(info("array", (3, 5, 5), "standardize")) and not drawable(info("array", (4, 5, 5), "identity"))
    pixels = as_pixels(np.array([[[0.0, 0.5, 1.2]]], np.float32), info("array", (1, 3), "identity"))
    assert pixels.dtype == np.uint8 and pixels.tolist() == [[[[0, 128, 255]]]]


def test_reconstructions_png_alternates_originals_and_reconstructions(tmp_path):
    originals = np.zeros((4, 1, 4, 4), np.uint8)
    write_reconstructions(tmp_path / "r.png", originals, originals + 255, IMAGES, columns_per_row=4)
    grid = np.asarray(Image.open(tmp_path / "r.png").convert("L"))
    top, bottom = grid[: grid.shape[0] // 2], grid[grid.shape[0] // 2 :]
    assert top.max() == 128 and bottom.max() == 255  # grey gaps around black, then white tiles


def test_reconstructions_csv_holds_only_the_reconstructions(tmp_path):
    rows = np.ones((2, 3), np.float32)
    write_reconstructions(tmp_path / "r.csv", rows * 0, rows, TABLE)
    assert (tmp_path / "r.csv").read_text().splitlines()[1:] == ["1.0,1.0,1.0"] * 2


def test_column_histograms(tmp_path):
    rng = np.random.default_rng(0)
    data, samples = rng.normal(size=(100, 20)), rng.normal(size=(100, 20))
    save_column_histograms(data, samples, None, tmp_path / "h.png", title="t")
    assert Image.open(tmp_path / "h.png").format == "PNG"
