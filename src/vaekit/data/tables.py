"""CSV tables with a header row: numeric columns are the data, one column may hold labels.

Without `columns`, every column whose cells are all numbers is modelled and columns with no
numbers at all (names, categories) are skipped with a warning. A column that mixes numbers with
other text, an empty cell, NaN or infinity is refused with its line and column: silently
dropping or imputing values would change the data the user thinks they are modelling.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaekit.config import DataConfig
from vaekit.data.source import TABLE, RawData
from vaekit.errors import UserError

logger = logging.getLogger(__name__)
DELIMITERS = (",", ";", "\t")  # the ones spreadsheets export; the header line decides which


@dataclass
class Cells:
    """A CSV's header and its rows of text cells, with each row's line number for messages."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def column(self, name: str) -> list[str]:
        index = self.header.index(name)
        return [row[index].strip() for row in self.rows]


def _read_text(path: Path) -> str:
    try:
        blob = path.read_bytes()
        if path.suffix.lower() == ".gz":
            blob = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path}: cannot be read ({error}); the file is truncated or corrupt") from error
    try:
        return blob.decode("utf-8-sig")  # -sig: Excel writes a byte-order mark before the header
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: is not UTF-8 text (byte {error.start}); save the table as UTF-8 CSV") from error


def _delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    return max(DELIMITERS, key=first_line.count)


def _parse(path: Path, text: str) -> tuple[list[list[str]], list[int]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), skipinitialspace=True)
    rows, lines = [], []
    try:
        for row in reader:
            if row:  # blank lines separate nothing in a CSV
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as error:
        raise UserError(
            f"{path}: line {reader.line_num} is not valid CSV ({error}); fix or re-export the file"
        ) from error
    return rows, lines


def _check_header(path: Path, header: list[str]) -> list[str]:
    names = [name.strip() for name in header]
    for position, name in enumerate(names, start=1):
        if not name:
            raise UserError(f"{path}: column {position} has no name in the header row; name every column")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"{path}: the header names {', '.join(duplicates)} more than once; give columns distinct names")
    if all(_is_number(name) for name in names):
        raise UserError(
            f"{path}: the first line ({', '.join(names[:3])}, ...) holds numbers, not column names; add a header row"
        )
    return names


def read_cells(path: Path) -> Cells:
    """The header and rows of a CSV (optionally .csv.gz), checked to be rectangular and non-empty."""
    rows, lines = _parse(path, _read_text(path))
    if not rows:
        raise UserError(f"{path}: is empty; a table needs a header row and one row per example")
    header = _check_header(path, rows[0])
    cells = Cells(path, header, rows[1:], lines[1:])
    for row, line in zip(cells.rows, cells.lines):
        if len(row) != len(header):
            raise UserError(
                f"{path}: line {line} has {len(row)} cells but the header names {len(header)} columns; fix that row"
            )
    if not cells.rows:
        raise UserError(f"{path}: has a header but no rows; add one row per example")
    return cells


def read_header(path: str | Path) -> tuple[str, ...]:
    """The column names of a CSV, for matching new data to a trained run's columns."""
    rows, _ = _parse(Path(path), _read_text(Path(path)))
    return tuple(_check_header(Path(path), rows[0])) if rows else ()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _known(cells: Cells, name: str, flag: str) -> None:
    if name not in cells.header:
        close = difflib.get_close_matches(name, cells.header, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the columns are {', '.join(cells.header)}"
        raise UserError(f"{cells.path}: {flag} {name!r} is not a column; {hint}")


def _refuse_first_bad_cell(cells: Cells, name: str, texts: list[str]) -> None:
    for text, line in zip(texts, cells.lines):
        if not text:
            raise UserError(f"{cells.path}: line {line}, column {name!r} is empty; fill in or remove missing values")
        if not _is_number(text):
            raise UserError(f"{cells.path}: line {line}, column {name!r} holds {text!r}, not a number; fix that cell")
    raise UserError(f"{cells.path}: column {name!r} holds cells that are not numbers; fix them")


def _numbers(cells: Cells, name: str) -> np.ndarray:
    """One column as float64, refusing empty, non-numeric, NaN and infinite cells by line."""
    texts = cells.column(name)
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        _refuse_first_bad_cell(cells, name, texts)
    bad = ~np.isfinite(values)
    if bad.any():
        line = cells.lines[int(np.argmax(bad))]
        raise UserError(
            f"{cells.path}: column {name!r} holds {int(bad.sum())} NaN or infinite value(s) "
            f"(the first on line {line}); "
            "remove or impute them first"
        )
    return values


def _data_columns(cells: Cells, config: DataConfig) -> list[str]:
    """The columns to model: those asked for, else every column that holds any number."""
    if config.columns:
        for name in config.columns:
            _known(cells, name, "--columns")
            if name == config.label_column:
                raise UserError(f"{cells.path}: {name!r} is both the --label-column and one of --columns; pick one")
        return list(config.columns)
    candidates = [name for name in cells.header if name != config.label_column]
    chosen = [name for name in candidates if any(_is_number(text) for text in cells.column(name))]
    skipped = [name for name in candidates if name not in chosen]
    if not chosen:
        raise UserError(
            f"{cells.path}: no column holds numbers (columns: {', '.join(cells.header)}); "
            "vaekit models numeric columns, so encode categories as numbers first"
        )
    if skipped:
        logger.warning("%s: skipped %d column(s) without numbers: %s", cells.path, len(skipped), ", ".join(skipped))
    return chosen


def _labels(cells: Cells, name: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer labels as they are; any other text becomes class indices in sorted order."""
    texts = cells.column(name)
    for text, line in zip(texts, cells.lines):
        if not text:
            raise UserError(f"{cells.path}: line {line}, label column {name!r} is empty; give every row a label")
    try:
        return np.array([int(text) for text in texts], dtype=np.int64), None
    except ValueError:
        names = tuple(sorted(set(texts)))
        index = {label: i for i, label in enumerate(names)}
        return np.array([index[text] for text in texts], dtype=np.int64), names


def _as_float32(values: np.ndarray, path: Path) -> np.ndarray:
    with np.errstate(over="ignore"):
        converted = values.astype(np.float32)
    if not np.isfinite(converted).all():
        raise UserError(f"{path}: holds values beyond float32's range (±3.4e38); rescale those columns first")
    return converted


def read_table(config: DataConfig) -> RawData:
    """A CSV as (N, columns) float32 in its own units, with labels from `label_column` if named."""
    path = Path(config.source)
    cells = read_cells(path)
    if config.label_column is not None:
        _known(cells, config.label_column, "--label-column")
    columns = _data_columns(cells, config)
    x = _as_float32(np.stack([_numbers(cells, name) for name in columns], axis=1), path)
    labels, class_names = _labels(cells, config.label_column) if config.label_column else (None, None)
    return RawData(
        x=x, y=labels, kind=TABLE, description=f"table {path}", columns=tuple(columns), class_names=class_names,
    )


def settings_like_run(path: str | Path, columns: tuple[str, ...], label_column: str | None, run: str) -> dict:
    """DataConfig settings that read a new CSV as a run's table was read: the run's columns, by name.

    The run's label column is kept only where the new table has it, so unlabelled rows can be encoded.
    """
    header = read_header(path)
    missing = [name for name in columns if name not in header]
    if missing:
        raise UserError(
            f"{path}: lacks the column(s) {', '.join(missing)} that {run} was trained on; "
            f"pass a table with the columns {', '.join(columns)}"
        )
    return {"columns": columns, "label_column": label_column if label_column in header else None}
