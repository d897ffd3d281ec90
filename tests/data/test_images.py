"""Image folders: decoding with Pillow, labels from class sub-folders, sizes, channels, and a CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaekit.config import DataConfig
from vaekit.data import IMAGE, detect_format, read_source
from vaekit.errors import UserError

CLASSES = ("circle", "cross", "square")
PER_CLASS = 100  # 300 PNGs: a realistic small folder that still trains in seconds
SIDE = 8


def shape_picture(name: str, brightness: int) -> np.ndarray:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    centre = (SIDE - 1) / 2
    masks = {
        "circle": (yy - centre) ** 2 + (xx - centre) ** 2 < (SIDE / 3) ** 2,
        "cross": (np.abs(yy - centre) < 1) | (np.abs(xx - centre) < 1),
        "square": (np.abs(yy - centre) < SIDE / 3) & (np.abs(xx - centre) < SIDE / 3),
    }
    return np.where(masks[name], brightness, 0).astype(np.uint8)


def make_shapes_folder(root: Path, per_class: int = PER_CLASS) -> Path:
    """Class sub-folders of grey PNGs, plus a README that is not an image."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(shape_picture(name, int(rng.integers(150, 256)))).save(root / name / f"{i:03d}.png")
    (root / "README.txt").write_text("three kinds of shapes\n")
    return root


def save(path: Path, pixels: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)
    return path


def read_folder(folder: Path, **settings) -> object:
    return read_source(DataConfig(source=str(folder), **settings))


def test_a_folder_is_detected_as_images(tmp_path):
    save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    assert detect_format(DataConfig(source=str(tmp_path))) == "images"


def test_class_sub_folders_become_labels_and_names(tmp_path, caplog):
    raw = read_folder(make_shapes_folder(tmp_path / "shapes", per_class=3))
    assert raw.kind == IMAGE
    assert raw.x.shape == (9, 1, SIDE, SIDE) and raw.x.dtype == np.uint8
    assert raw.class_names == CLASSES
    assert raw.y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(raw.x[0, 0], np.asarray(Image.open(tmp_path / "shapes/circle/000.png")))
    assert "skipped 1 file(s) that are not images (such as README.txt)" in caplog.text


def test_images_directly_in_the_folder_have_no_labels(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", np.full((4, 5), i, np.uint8))
    raw = read_folder(tmp_path)
    assert raw.y is None and raw.x.shape == (3, 1, 4, 5)


def test_only_the_first_level_of_sub_folders_names_the_class(tmp_path):
    save(tmp_path / "cats/indoor/a.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "cats/outdoor/b.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / "dogs/c.png", np.zeros((4, 4), np.uint8))
    raw = read_folder(tmp_path)
    assert raw.class_names == ("cats", "dogs") and raw.y.tolist() == [0, 0, 1]


def test_hidden_files_and_folders_are_ignored(tmp_path):
    save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    save(tmp_path / ".thumbnails/b.png", np.zeros((9, 9), np.uint8))
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    assert len(read_folder(tmp_path).x) == 1


def test_rgb_and_grey_mix_becomes_rgb(tmp_path):
    save(tmp_path / "grey.png", np.full((4, 4), 7, np.uint8))
    save(tmp_path / "rgb.png", np.dstack([np.full((4, 4), v, np.uint8) for v in (1, 2, 3)]))
    raw = read_folder(tmp_path)
    assert raw.x.shape == (2, 3, 4, 4)
    assert raw.x[0, :, 0, 0].tolist() == [7, 7, 7] and raw.x[1, :, 0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("channels, shape", [(1, (1, 1, 4, 4)), (3, (1, 3, 4, 4))])
def test_channels_forces_grey_or_rgb(tmp_path, channels, shape):
    save(tmp_path / "rgb.jpg", np.dstack([np.full((4, 4), v, np.uint8) for v in (200, 100, 50)]), quality=95)
    assert read_folder(tmp_path, channels=channels).x.shape == shape


def test_image_size_resizes_mixed_sizes(tmp_path):
    save(tmp_path / "small.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "large.bmp", np.full((16, 24), 255, np.uint8))
    raw = read_folder(tmp_path, image_size=(6, 4))
    assert raw.x.shape == (2, 1, 6, 4)
    assert raw.x[0].max() == 255 and raw.x[1].max() == 0  # sorted names: large.bmp, small.png


def test_mixed_sizes_without_image_size_list_the_sizes(tmp_path):
    for i in range(3):
        save(tmp_path / f"a{i}.png", np.zeros((8, 8), np.uint8))
    save(tmp_path / "b.png", np.zeros((5, 7), np.uint8))
    with pytest.raises(UserError, match=r"3 are 8x8 such as a0.png, 1 are 5x7 such as b.png\); pass --image-size 8x8"):
        read_folder(tmp_path)


def test_a_folder_keeps_each_images_file_name(tmp_path):
    raw = read_folder(make_shapes_folder(tmp_path / "shapes", per_class=2))
    assert raw.names == ("circle/000.png", "circle/001.png", "cross/000.png", "cross/001.png",
                         "square/000.png", "square/001.png")


def test_sixteen_bit_grey_keeps_its_range(tmp_path):
    wide = np.array([[0, 65535], [32768, 256]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "deep.png")
    assert read_folder(tmp_path).x[0, 0].tolist() == [[0, 255], [128, 1]]


def test_exif_rotation_is_applied(tmp_path):
    picture = Image.fromarray(np.zeros((4, 6, 3), np.uint8))
    exif = picture.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    picture.save(tmp_path / "photo.jpg", exif=exif)
    assert read_folder(tmp_path).x.shape[2:] == (6, 4)


@pytest.mark.parametrize("damage, reason", [
    ("empty", "is empty"), ("header only", "cannot identify image file"),
    ("truncated", "image file is truncated"), ("garbage", "cannot identify image file"),
])
def test_a_broken_image_is_refused_by_name(tmp_path, damage, reason):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)  # incompressible: a long IDAT
    blob = save(tmp_path / "good.png", noise).read_bytes()
    broken = {"empty": b"", "header only": blob[:40], "truncated": blob[: len(blob) * 4 // 5],
              "garbage": b"not a picture at all"}[damage]
    (tmp_path / "broken.png").write_bytes(broken)
    with pytest.raises(UserError, match=rf"broken\.png: .*{reason}"):
        read_folder(tmp_path)


# ----- end to end from the command line ------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> tuple[Path, Path]:
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("images")
    folder = make_shapes_folder(root / "shapes")
    out = root / "run"
    code = main(["train", "--data", str(folder), "--out", str(out), "--epochs", "2", "--batch-size", "32",
                 "--hidden-sizes", "32", "--latent-dim", "2", "--quiet"])
    assert code == 0
    return folder, out


def test_a_folder_of_pngs_trains_from_the_cli(shapes_run):
    _, out = shapes_run
    info = json.loads((out / "config.json").read_text())["data"]
    assert info["kind"] == "image" and info["event_shape"] == [1, SIDE, SIDE]
    assert info["class_names"] == list(CLASSES) and sum(info["counts"].values()) == 3 * PER_CLASS
    for name in ("samples.png", "reconstructions.png", "loss.png", "results.json"):
        assert (out / name).is_file(), name


def test_reconstruct_and_sample_write_pngs(shapes_run, tmp_path, cli):
    folder, out = shapes_run
    result = cli("reconstruct", out, "--data", folder, "--n", "16", "--out", tmp_path / "recon.png")
    assert result.code == 0, result.err
    assert Image.open(tmp_path / "recon.png").format == "PNG"
    assert cli("sample", out, "--n", "5", "--out", tmp_path / "samples").code == 0
    files = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert files == [f"{i:05d}.png" for i in range(5)]
    assert np.asarray(Image.open(tmp_path / "samples" / files[0])).shape == (SIDE, SIDE)


def test_encode_keeps_the_folder_labels(shapes_run, tmp_path, cli):
    folder, out = shapes_run
    assert cli("encode", out, "--data", folder, "--out", tmp_path / "codes.npz").code == 0
    codes = np.load(tmp_path / "codes.npz")
    assert codes["loc"].shape == (3 * PER_CLASS, 2)
    assert np.bincount(codes["labels"]).tolist() == [PER_CLASS] * 3


def test_encode_names_each_codes_file_and_class(shapes_run, tmp_path, cli):
    folder, out = shapes_run
    result = cli("encode", out, "--data", folder, "--out", tmp_path / "codes.npz")
    assert "rows, names, labels, class_names" in result.out
    codes = np.load(tmp_path / "codes.npz")  # no pickle needed: the names are a unicode array
    assert codes["names"][0] == "circle/000.png" and codes["names"][-1] == f"square/{PER_CLASS - 1:03d}.png"
    assert codes["class_names"].tolist() == list(CLASSES) and codes["rows"].tolist() == list(range(3 * PER_CLASS))
    assert [codes["class_names"][label] for label in codes["labels"]] == [n.split("/")[0] for n in codes["names"]]
    result = cli("encode", out, "--out", tmp_path / "test.npz", "--json")  # the run's own test split
    test = np.load(tmp_path / "test.npz")
    assert "names" in json.loads(result.out)["arrays"]
    assert test["names"].tolist() == [codes["names"][row] for row in test["rows"]]


def test_reconstruct_spreads_its_examples_over_the_classes(shapes_run, tmp_path, cli):
    from vaekit.runs.trained import TrainedVAE

    folder, out = shapes_run
    chosen, _ = TrainedVAE(out).load_split(str(folder))
    first = chosen.spread(16, seed=0)
    assert sorted(np.bincount(first.y).tolist()) == [5, 5, 6] and list(first.y) == sorted(first.y)
    assert first.names != chosen.spread(16, seed=1).names and first.names == chosen.spread(16, seed=0).names
    assert cli("reconstruct", out, "--data", folder, "--n", "16", "--out", tmp_path / "r.npy").code == 0
    assert np.array_equal(np.load(tmp_path / "r.npy"), TrainedVAE(out).reconstruct(first.x))


def test_a_new_colour_folder_is_read_in_the_runs_channels(shapes_run, tmp_path, cli):
    _, out = shapes_run
    for i in range(3):
        save(tmp_path / "colour" / f"{i}.png", np.dstack([shape_picture("cross", 200)] * 3))
    result = cli("encode", out, "--data", tmp_path / "colour", "--out", tmp_path / "codes.npz")
    assert result.code == 0, result.err
    assert np.load(tmp_path / "codes.npz")["loc"].shape == (3, 2)
