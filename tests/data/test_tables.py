"""CSV tables: numeric columns, labels, selection, dialects, and a CLI run in original units."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from vaekit.config import DataConfig
from vaekit.data import TABLE, detect_format, read_source
from vaekit.data.tables import read_header
from vaekit.errors import UserError

COLUMNS = ("height_cm", "weight_kg", "income")  # units six orders of magnitude apart
ROWS = 400


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def read(path: Path, **settings):
    return read_source(DataConfig(source=str(path), **settings))


def people(rows: int = ROWS, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Names, numbers (rows, 3) driven by one hidden factor, and a group label per row."""
    rng = np.random.default_rng(seed)
    size = rng.normal(size=rows)
    numbers = np.stack([
        170 + 10 * size + rng.normal(0, 2, rows),
        70 + 12 * size + rng.normal(0, 3, rows),
        50_000 + 8_000 * size + rng.normal(0, 2_000, rows),
    ], axis=1).round(1)
    return [f"person{i}" for i in range(rows)], numbers, ["tall" if s > 0 else "short" for s in size]


def write_people(path: Path, rows: int = ROWS, seed: int = 0) -> np.ndarray:
    names, numbers, groups = people(rows, seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", *COLUMNS, "group"])
        for name, row, group in zip(names, numbers, groups):
            writer.writerow([name, *row, group])
    return numbers


def test_csv_and_csv_gz_are_detected(tmp_path):
    for name in ("t.csv", "t.CSV", "t.csv.gz"):
        (tmp_path / name).touch()
        assert detect_format(DataConfig(source=str(tmp_path / name))) == "csv"


def test_numeric_columns_are_data_and_text_columns_are_skipped(tmp_path, caplog):
    numbers = write_people(tmp_path / "p.csv", rows=5)
    raw = read(tmp_path / "p.csv", label_column="group")
    assert raw.kind == TABLE and raw.columns == COLUMNS and raw.x.dtype == np.float32
    np.testing.assert_allclose(raw.x, numbers, rtol=1e-6)
    assert raw.class_names == ("short", "tall") and len(raw.y) == 5
    assert "skipped 1 column(s) without numbers: name" in caplog.text


def test_integer_labels_stay_integers(tmp_path):
    raw = read(write(tmp_path / "t.csv", "a,b,digit\n1,2,7\n3,4,3\n"), label_column="digit")
    assert raw.y.tolist() == [7, 3] and raw.class_names is None and raw.columns == ("a", "b")


def test_columns_selects_and_orders(tmp_path):
    raw = read(write(tmp_path / "t.csv", "a,b,c\n1,2,3\n4,5,6\n"), columns=("c", "a"))
    assert raw.columns == ("c", "a") and raw.x.tolist() == [[3, 1], [6, 4]]


@pytest.mark.parametrize("text", [
    "a;b\n1.5;2\n3;4\n",  # semicolons, as European spreadsheets export
    "a\tb\n1.5\t2\n3\t4\n",
    "\ufeffa,b\n1.5,2\n\n3,4\n",  # Excel's byte-order mark and a blank line
    ' "a" , b \n 1.5 , 2\n3,4\n',  # quoted names and spaces around cells
])
def test_common_csv_dialects(tmp_path, text):
    raw = read(write(tmp_path / "t.csv", text))
    assert raw.columns == ("a", "b") and raw.x.tolist() == [[1.5, 2], [3, 4]]


def test_gzipped_csv(tmp_path):
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert read(tmp_path / "t.csv.gz").x.tolist() == [[1, 2]]


def test_read_header(tmp_path):
    assert read_header(write(tmp_path / "t.csv", "x, y ,z\n1,2,3\n")) == ("x", "y", "z")


@pytest.mark.parametrize("text, settings, message", [
    ("a,b\n1,2\n3\n", {}, "line 3 has 1 cells but the header names 2 columns"),
    ("a,b\n1,2\n3,oops\n", {}, r"line 3, column 'b' holds 'oops', not a number"),
    ("a,b\n1,\n3,4\n", {}, r"line 2, column 'b' is empty"),
    ("a,b\n1,nan\n3,inf\n", {}, r"column 'b' holds 2 NaN or infinite value\(s\) \(the first on line 2\)"),
    ("a,b\nx,y\n", {}, "no column holds numbers"),
    ("a,b\n", {}, "has a header but no rows"),
    ("", {}, "is empty"),
    ("1,2\n3,4\n", {}, "holds numbers, not column names; add a header row"),
    ("a,a\n1,2\n", {}, "names a more than once"),
    ("a,,c\n1,2,3\n", {}, "column 2 has no name"),
    ("a,label\n1,2\n", {"label_column": "lable"}, r"--label-column 'lable' is not a column; did you mean 'label'\?"),
    ("a,b\n1,2\n", {"columns": ("a", "c")}, "--columns 'c' is not a column"),
    ("a,b\n1,2\n", {"columns": ("a",), "label_column": "a"}, "both the --label-column and one of --columns"),
    ("a,b\n1,x\n", {"columns": ("b",)}, "holds 'x', not a number"),
    ("a,b\n1,2\n3,4\n", {"label_column": "b", "columns": None}, None),  # a valid one, for contrast
    ("a,b\n1,1e39\n", {}, "beyond float32's range"),
    ("a,g\n1,\n", {"label_column": "g"}, "label column 'g' is empty"),
])
def test_bad_tables_are_refused_by_line_and_column(tmp_path, text, settings, message):
    path = write(tmp_path / "t.csv", text)
    if message is None:
        assert read(path, **settings).x.shape == (2, 1)
        return
    with pytest.raises(UserError, match=message):
        read(path, **settings)


def test_not_utf8_is_refused(tmp_path):
    (tmp_path / "t.csv").write_bytes("a,b\n1,é\n".encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        read(tmp_path / "t.csv")


# ----- end to end from the command line ------------------------------------------------------------


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    from vaekit.cli import main

    root = tmp_path_factory.mktemp("tables")
    numbers = write_people(root / "people.csv")
    out = root / "run"
    code = main(["train", "--data", str(root / "people.csv"), "--label-column", "group", "--out", str(out),
                 "--epochs", "5", "--batch-size", "32", "--hidden-sizes", "32", "--latent-dim", "2", "--quiet"])
    assert code == 0
    return root / "people.csv", out, numbers


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=np.float64)


def test_a_table_trains_with_a_gaussian_and_stores_its_standardization(table_run):
    _, out, numbers = table_run
    info = json.loads((out / "config.json").read_text())["data"]
    assert info["kind"] == "table" and info["likelihood"] == "gaussian"
    assert info["columns"] == list(COLUMNS) and info["class_names"] == ["short", "tall"]
    assert info["codec"]["type"] == "standardize"
    np.testing.assert_allclose(info["codec"]["mean"], numbers.mean(axis=0), rtol=0.01)
    for name in ("loss.png", "histograms.png", "samples.csv", "results.json"):
        assert (out / name).is_file(), name
    header, samples = read_csv(out / "samples.csv")
    assert header == list(COLUMNS) and samples.shape[1] == 3


def test_reconstructions_come_back_in_original_units_and_names(table_run, tmp_path, cli):
    data, out, numbers = table_run
    result = cli("reconstruct", out, "--data", data, "--out", tmp_path / "r.csv")
    assert result.code == 0, result.err
    header, reconstructions = read_csv(tmp_path / "r.csv")
    assert header == list(COLUMNS) and reconstructions.shape == numbers.shape
    mean, spread = numbers.mean(axis=0), numbers.std(axis=0)
    # Original units: each column's reconstructions centre on that column's own mean (170, 70, 50,000)...
    assert np.all(np.abs(reconstructions.mean(axis=0) - mean) < 0.5 * spread)
    # ...and the one hidden factor is recovered, so rows keep their order in every column.
    for column in range(3):
        assert np.corrcoef(reconstructions[:, column], numbers[:, column])[0, 1] > 0.8


def test_the_reconstruction_error_is_given_per_column_in_its_units(table_run, tmp_path, cli):
    data, out, numbers = table_run
    result = cli("reconstruct", out, "--data", data, "--out", tmp_path / "r.csv", "--json")
    by_column = json.loads(result.out)["mean_absolute_error_by_column"]
    _, reconstructions = read_csv(tmp_path / "r.csv")
    assert list(by_column) == list(COLUMNS)
    np.testing.assert_allclose(list(by_column.values()), np.abs(reconstructions - numbers).mean(axis=0), rtol=1e-3)
    text = cli("reconstruct", out, "--data", data, "--out", tmp_path / "r.csv", "--overwrite").out
    assert "per column, in its units: height_cm " in text and ", income " in text


def test_sample_writes_csv_in_original_units(table_run, tmp_path, cli):
    _, out, numbers = table_run
    assert cli("sample", out, "--n", "50", "--out", tmp_path / "s.csv").code == 0
    header, samples = read_csv(tmp_path / "s.csv")
    assert header == list(COLUMNS) and samples.shape == (50, 3)
    assert np.all(np.abs(samples.mean(axis=0) - numbers.mean(axis=0)) < numbers.std(axis=0))


def test_new_rows_are_matched_by_column_name(table_run, tmp_path, cli):
    data, out, numbers = table_run
    shuffled = tmp_path / "shuffled.csv"
    with open(shuffled, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["income", "height_cm", "weight_kg", "note"])  # other order, no label column
        writer.writerows([[r[2], r[0], r[1], "x"] for r in numbers[:20]])
    assert cli("encode", out, "--data", shuffled, "--out", tmp_path / "a.npz").code == 0
    assert cli("encode", out, "--data", data, "--split", "all", "--out", tmp_path / "b.npz").code == 0
    new, original = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    np.testing.assert_allclose(new["loc"], original["loc"][:20], rtol=1e-5, atol=1e-6)
    assert "labels" not in new and original["labels"].shape == (ROWS,)


def test_a_table_of_zeros_and_ones_may_use_a_bernoulli(tmp_path, cli):
    flags = np.random.default_rng(0).integers(0, 2, (120, 4))
    write(tmp_path / "flags.csv", "a,b,c,d\n" + "".join(",".join(map(str, row)) + "\n" for row in flags))
    result = cli("train", "--data", tmp_path / "flags.csv", "--likelihood", "bernoulli", "--out", tmp_path / "run",
                 "--epochs", "1", "--batch-size", "32", "--hidden-sizes", "8", "--latent-dim", "2", "--quiet")
    assert result.code == 0, result.err
    info = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert info["likelihood"] == "bernoulli" and info["codec"]["type"] == "identity"  # unscaled, not standardized
    assert cli("sample", tmp_path / "run", "--n", "5", "--out", tmp_path / "s.csv").code == 0
    _, samples = read_csv(tmp_path / "s.csv")
    assert samples.min() >= 0 and samples.max() <= 1  # probabilities, in the table's own [0, 1] units
