"""NumPy arrays: .npy and .npz, images or values of any rank, labels, and a CLI run on a .npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vaekit.config import DataConfig
from vaekit.data import ARRAY, IMAGE, detect_format, read_source
from vaekit.data.arrays import from_array
from vaekit.errors import UserError


def read(path: Path, **settings):
    return read_source(DataConfig(source=str(path), **settings))


@pytest.mark.parametrize("name, reader", [("a.npy", "npy"), ("a.npz", "npz")])
def test_format_is_detected_from_the_suffix(tmp_path, name, reader):
    (tmp_path / name).touch()
    assert detect_format(DataConfig(source=str(tmp_path / name))) == reader


@pytest.mark.parametrize("shape, stored", [((5, 1, 4, 4), (5, 1, 4, 4)), ((5, 3, 4, 4), (5, 3, 4, 4)),
                                           ((5, 4, 4), (5, 1, 4, 4))])
def test_uint8_arrays_are_images(tmp_path, shape, stored):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    raw = read(tmp_path / "x.npy")
    assert raw.kind == IMAGE and raw.x.shape == stored and raw.x.dtype == np.uint8
    assert np.array_equal(raw.x.reshape(x.shape), x)


@pytest.mark.parametrize("shape", [(5, 1, 4, 4), (5, 4, 4), (6, 3), (6, 2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_an_array_in_memory_is_read_by_the_rule_of_a_npy_file(tmp_path, shape, dtype):
    """One rule for both: `vaekit.train(data=array)` sees what `--data array.npy` sees."""
    x = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    from_file, in_memory = read(tmp_path / "x.npy"), from_array(x)
    assert (in_memory.kind, in_memory.x.shape) == (from_file.kind, from_file.x.shape)
    assert in_memory.x.dtype == from_file.x.dtype
    assert np.array_equal(in_memory.x, from_file.x)


def test_labels_of_an_array_in_memory_are_checked_as_an_npz_s(tmp_path):
    x = np.zeros((4, 3), np.float32)
    raw = from_array(x, np.array(["b", "a", "b", "a"]))
    assert raw.class_names == ("a", "b") and raw.y.tolist() == [1, 0, 1, 0]
    with pytest.raises(UserError, match="labels of shape \\(3,\\) do not match 4 examples"):
        from_array(x, np.array([0, 1, 2]))


@pytest.mark.parametrize("shape", [(6, 3), (6, 2, 3, 4), (6, 2, 2, 2, 2)])
def test_floats_of_any_rank_are_values(tmp_path, shape):
    x = np.random.default_rng(0).normal(size=shape)
    np.save(tmp_path / "x.npy", x)
    raw = read(tmp_path / "x.npy")
    assert raw.kind == ARRAY and raw.x.dtype == np.float32 and raw.x.shape == shape
    np.testing.assert_allclose(raw.x, x, rtol=1e-6)


def test_one_value_per_example_is_a_one_column_table(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(5, dtype=np.int16))
    assert read(tmp_path / "x.npy").x.shape == (5, 1)


def test_channels_last_uint8_is_modelled_as_values_with_a_hint(tmp_path, caplog):
    np.save(tmp_path / "x.npy", np.zeros((4, 6, 6, 3), np.uint8))
    raw = read(tmp_path / "x.npy")
    assert raw.kind == ARRAY and raw.x.shape == (4, 6, 6, 3)
    assert "x.transpose(0, 3, 1, 2)" in caplog.text


def test_npz_reads_x_and_y(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 3)), y=np.array([0, 1, 1, 2]))
    raw = read(tmp_path / "d.npz")
    assert raw.x.shape == (4, 3) and raw.y.tolist() == [0, 1, 1, 2]


def test_npz_string_labels_become_class_names(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2)), y=np.array(["dog", "cat", "dog"]))
    raw = read(tmp_path / "d.npz")
    assert raw.class_names == ("cat", "dog") and raw.y.tolist() == [1, 0, 1]


def test_npz_keys_are_chosen_by_settings(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.ones((3, 2)), target=np.arange(3), other=np.zeros(1))
    raw = read(tmp_path / "d.npz", array_key="features", label_key="target")
    assert raw.x.shape == (3, 2) and raw.y.tolist() == [0, 1, 2]


def test_an_npz_of_one_unnamed_array_is_read(tmp_path):
    np.savez(tmp_path / "d.npz", np.ones((3, 2)))  # numpy names it arr_0
    assert read(tmp_path / "d.npz").x.shape == (3, 2)


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "d.npy", np.array([1.0, np.nan, 2.0])),
     r"holds 1 NaN or infinite value\(s\) \(the first in example 1\)"),
    (lambda p: np.save(p / "d.npy", np.array([[1.0, np.inf]])), "NaN or infinite"),
    (lambda p: np.save(p / "d.npy", np.array(["a", "b"])), "holds <U1 values"),
    (lambda p: np.save(p / "d.npy", np.array([1 + 2j])), "complex128 values"),
    (lambda p: np.save(p / "d.npy", np.zeros((0, 3))), "holds no examples"),
    (lambda p: np.save(p / "d.npy", np.float64(3.0)), "a single number"),
    (lambda p: np.save(p / "d.npy", np.array([1e300])), "beyond float32's range"),
    (lambda p: np.save(p / "d.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), "Python objects"),
    (lambda p: (p / "d.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, "
                                         b"'shape': (1000000000000,), }" + b" " * 50 + b"\n"),
     "promises 8000000000000 bytes"),
])
def test_bad_npy_files_are_refused(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(UserError, match=message):
        read(tmp_path / "d.npy")


@pytest.mark.parametrize("arrays, settings, message", [
    ({"a": np.ones((2, 2)), "b": np.ones(2)}, {}, r"holds no array 'x' \(it holds a, b\); pass --array-key"),
    ({"x": np.ones((2, 2))}, {"label_key": "target"}, "holds no labels 'target'"),
    ({"x": np.ones((3, 2)), "y": np.arange(2)}, {}, r"labels of shape \(2,\) do not match 3 examples"),
    ({"x": np.ones((2, 2)), "y": np.array([0.5, 1.0])}, {}, "labels must be integers or strings"),
])
def test_bad_npz_files_are_refused(tmp_path, arrays, settings, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match=message):
        read(tmp_path / "d.npz", **settings)


def test_a_truncated_npz_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((50, 50)))
    blob = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="not a valid .npz archive"):
        read(tmp_path / "d.npz")


# ----- end to end from the command line ------------------------------------------------------------


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """Float 'images' (N, 1, 6, 6) in [0, 1] with labels: Bernoulli likelihood, pictures drawn."""
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("arrays")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 240)
    x = np.clip(rng.normal(0.3 + 0.4 * labels[:, None, None, None], 0.1, (240, 1, 6, 6)), 0, 1).astype(np.float32)
    np.savez(root / "data.npz", x=x, y=labels)
    out = root / "run"
    code = main(["train", "--data", str(root / "data.npz"), "--out", str(out), "--epochs", "2", "--batch-size", "32",
                 "--hidden-sizes", "16", "--latent-dim", "2", "--quiet"])
    assert code == 0
    return root / "data.npz", out, x


def test_an_npz_trains_from_the_cli(npz_run):
    _, out, _ = npz_run
    info = json.loads((out / "config.json").read_text())["data"]
    assert info["kind"] == "array" and info["event_shape"] == [1, 6, 6] and info["likelihood"] == "bernoulli"
    assert (out / "samples.png").is_file() and (out / "reconstructions.png").is_file()


def test_reconstruct_writes_npy_in_the_arrays_shape(npz_run, tmp_path, cli):
    data, out, x = npz_run
    result = cli("reconstruct", out, "--data", data, "--out", tmp_path / "r.npy")
    assert result.code == 0, result.err
    reconstructions = np.load(tmp_path / "r.npy")
    assert reconstructions.shape == x.shape and reconstructions.dtype == np.float32
    assert reconstructions.min() >= 0 and reconstructions.max() <= 1


def test_sample_and_encode_an_npz_run(npz_run, tmp_path, cli):
    data, out, x = npz_run
    assert cli("sample", out, "--n", "7", "--out", tmp_path / "s.npy").code == 0
    assert np.load(tmp_path / "s.npy").shape == (7, 1, 6, 6)
    assert cli("sample", out, "--n", "7", "--out", tmp_path / "s.png").code == 0
    assert cli("encode", out, "--data", data, "--out", tmp_path / "c.npz").code == 0
    codes = np.load(tmp_path / "c.npz")
    assert codes["loc"].shape == (len(x), 2) and codes["labels"].shape == (len(x),)
