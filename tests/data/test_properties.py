"""Property-based tests of the readers: valid data round-trips exactly, in its own units and shapes;
any bytes at all end in data or a `UserError`, never in a traceback (tests/fuzzing.py fuzzes the readers
themselves; here damaged files go through the command line).

Example counts are small and the two models are trained once for the module, so that the file
runs in seconds; hypothesis still explores shapes, units and damage that hand-written cases miss.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fuzzing import damaged, place
from vaekit.config import DataConfig
from vaekit.data import read_source
from vaekit.data.source import fit_codec

COLUMNS = ("height_cm", "weight_kg", "income")
MEANS = np.array([170.0, 70.0, 50_000.0])
SPREADS = np.array([10.0, 12.0, 8_000.0])
ARRAY_SHAPE = (2, 3)
ARRAY_MEAN, ARRAY_SPREAD = 100.0, 5.0
QUICK = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_csv(path: Path, header: list[str], rows: np.ndarray, extra: dict[str, list[str]] | None = None) -> Path:
    """Values as Python's shortest repr of each float32, so the text holds them exactly."""
    extra = extra or {}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, *extra])
        for i, row in enumerate(rows):
            writer.writerow([repr(float(v)) for v in row] + [values[i] for values in extra.values()])
    return path


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=np.float64).reshape(len(rows) - 1, len(rows[0]))


# ----- strategies -------------------------------------------------------------------------------------

finite32 = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
float_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5),
    elements=finite32,
)
image_arrays = hnp.arrays(
    dtype=np.uint8,
    shape=st.tuples(st.integers(1, 6), st.sampled_from([1, 3]), st.integers(1, 6), st.integers(1, 6)),
)
column_names = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(lambda name: not is_number(name)),
    min_size=1, max_size=5, unique=True,
)


@st.composite
def tables(draw) -> tuple[list[str], np.ndarray, list[str] | None]:
    """Column names, float32 values (rows, columns), and maybe text labels."""
    names = draw(column_names)
    rows = draw(st.integers(1, 20))
    values = draw(hnp.arrays(np.float32, (rows, len(names)), elements=finite32))
    labels = draw(st.one_of(st.none(), st.lists(st.sampled_from(["cat", "dog", "7x"]), min_size=rows, max_size=rows)))
    return names, values, labels


def close_in_units(back: np.ndarray, x: np.ndarray) -> None:
    scale = float(np.abs(x).max()) + 1.0
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-5 * scale)


# ----- valid data is read exactly and its codec inverts ----------------------------------------------


@QUICK
@given(x=float_arrays)
def test_any_float_array_is_read_exactly_and_its_codec_inverts(x):
    import torch

    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "x.npy", x)
        raw = read_source(DataConfig(source=str(Path(folder) / "x.npy")))
    expected = x.astype(np.float32).reshape(len(x), -1) if x.ndim == 1 else x.astype(np.float32)
    assert raw.x.shape == expected.shape and np.array_equal(raw.x, expected)
    codec = fit_codec(raw, raw.x)
    close_in_units(codec.from_model(codec.to_model(torch.from_numpy(raw.x))).numpy(), raw.x)


@QUICK
@given(x=image_arrays, as_npz=st.booleans())
def test_any_uint8_image_array_keeps_its_pixels(x, as_npz):
    import torch

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("x.npz" if as_npz else "x.npy")
        np.savez(path, x=x) if as_npz else np.save(path, x)
        raw = read_source(DataConfig(source=str(path)))
    assert raw.kind == "image" and np.array_equal(raw.x, x)
    codec = fit_codec(raw, raw.x)
    assert np.array_equal(codec.from_model(codec.to_model(torch.from_numpy(raw.x))).numpy(), x)


@QUICK
@given(table=tables())
def test_any_table_is_read_exactly_with_its_names_and_labels(table):
    import torch

    names, values, labels = table
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "t.csv", names, values, {"kind": labels} if labels else None)
        raw = read_source(DataConfig(source=str(path), label_column="kind" if labels else None))
    assert raw.columns == tuple(names) and np.array_equal(raw.x, values)
    if labels:
        assert [raw.class_names[i] for i in raw.y] == labels
    codec = fit_codec(raw, raw.x)
    close_in_units(codec.from_model(codec.to_model(torch.from_numpy(raw.x))).numpy(), raw.x)


# ----- round trips through trained runs, from the command line ---------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One table run (three columns in very different units) and one array run (N, 2, 3) around 100."""
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("property_runs")
    rng = np.random.default_rng(0)
    write_csv(root / "people.csv", list(COLUMNS), (MEANS + SPREADS * rng.normal(size=(300, 3))).astype(np.float32))
    np.save(root / "values.npy", rng.normal(ARRAY_MEAN, ARRAY_SPREAD, (300, *ARRAY_SHAPE)).astype(np.float32))
    small = ["--epochs", "3", "--batch-size", "32", "--hidden-sizes", "16", "--latent-dim", "2", "--quiet"]
    for name, data in (("table", "people.csv"), ("array", "values.npy")):
        assert main(["train", "--data", str(root / data), "--out", str(root / name), *small]) == 0
    return {"table": root / "table", "array": root / "array"}


@FEW
@given(rows=st.integers(1, 25), order=st.permutations(range(3)), seed=st.integers(0, 2**16), data=st.data())
def test_any_table_round_trips_in_original_units_and_names(runs, cli, rows, order, seed, data):
    values = (MEANS + SPREADS * np.random.default_rng(seed).uniform(-3, 3, (rows, 3))).astype(np.float32)
    note = data.draw(st.lists(st.sampled_from(["x", "y"]), min_size=rows, max_size=rows))
    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder) / "new.csv", [COLUMNS[i] for i in order], values[:, order], {"note": note})
        result = cli("reconstruct", runs["table"], "--data", path, "--out", Path(folder) / "r.csv")
        assert result.code == 0, result.err
        header, reconstructions = read_csv(Path(folder) / "r.csv")
        assert cli("encode", runs["table"], "--data", path, "--out", Path(folder) / "c.npz").code == 0
        codes = np.load(Path(folder) / "c.npz")
    assert header == list(COLUMNS) and reconstructions.shape == (rows, 3)
    # Original units: every column near its own scale (170 cm, 70 kg, 50,000), not standardized near 0.
    assert np.all(np.abs(reconstructions - MEANS) < 6 * SPREADS)
    assert codes["loc"].shape == (rows, 2) and codes["scale"].shape == (rows, 2) and (codes["scale"] > 0).all()


@FEW
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 25), *map(st.just, ARRAY_SHAPE)),
                    elements=st.floats(ARRAY_MEAN - 3 * ARRAY_SPREAD, ARRAY_MEAN + 3 * ARRAY_SPREAD, width=32)))
def test_any_array_round_trips_in_its_shape_and_units(runs, cli, x):
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "new.npy", x)
        result = cli("reconstruct", runs["array"], "--data", Path(folder) / "new.npy", "--out", Path(folder) / "r.npy")
        assert result.code == 0, result.err
        reconstructions = np.load(Path(folder) / "r.npy")
    assert reconstructions.shape == x.shape and reconstructions.dtype == np.float32
    assert np.all(np.abs(reconstructions - ARRAY_MEAN) < 6 * ARRAY_SPREAD)


# ----- any bytes end in data or a UserError ----------------------------------------------------------
# Reading any bytes directly is fuzzed in tests/test_fuzz_readers.py (the "data" target of tests/fuzzing.py,
# whose strategy this shares); here they go through the command line.


@FEW
@given(file=damaged())
def test_any_bytes_through_the_cli_exit_0_or_2_without_a_traceback(runs, cli, file):
    name, blob = file
    with tempfile.TemporaryDirectory() as folder:
        source = place(Path(folder), name, blob)
        result = cli("encode", runs["table"], "--data", source, "--out", Path(folder) / "codes.npz")
    assert result.code in (0, 2) and "Traceback" not in result.err
