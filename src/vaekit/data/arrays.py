"""NumPy arrays: a `.npy` file (N, ...) or a `.npz` archive with data and optional labels.

uint8 arrays shaped (N, C, H, W) with C in {1, 3}, or (N, H, W), are images (pixels 0..255);
anything else numeric is float data of any rank. Headers are checked against the file's size
before anything is read, so a truncated or doctored file is refused instead of half-read.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from vaekit.config import DataConfig
from vaekit.data.source import ARRAY, IMAGE, RawData
from vaekit.errors import UserError

logger = logging.getLogger(__name__)
# NumPy's header parser and zipfile raise many types for a malformed file (ValueError, tokenize's
# TokenError, NotImplementedError for exotic zip features, ...): each means "unreadable", never a bug here.
UNREADABLE = Exception
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
DEFAULT_ARRAY_KEY = "x"  # DataConfig's defaults; an explicit other key that is missing is an error
DEFAULT_LABEL_KEY = "y"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())  # the CLI prints one line; parser messages may hold newlines


def _check_header(handle: IO[bytes], available: int, where: str) -> None:
    """Read a .npy header and refuse object arrays or a data size that the bytes on disk cannot hold."""
    try:
        version = np.lib.format.read_magic(handle)
        if version not in NPY_VERSIONS:
            raise ValueError(f"unknown .npy format version {version}")
        # Version 3 differs from 2 only in allowing UTF-8 field names, which the 2.0 reader parses too.
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
    except UNREADABLE as error:
        raise UserError(f"{where}: not a valid .npy array ({_one_line(error)}); save it with numpy.save") from error
    if dtype.hasobject:
        raise UserError(f"{where}: holds Python objects, not numbers; save a numeric array with numpy.save")
    needed = math.prod(shape) * dtype.itemsize
    if needed != available - handle.tell():
        raise UserError(
            f"{where}: its header promises {needed} bytes for shape {shape} but {available - handle.tell()} "
            "follow; the file is truncated or corrupt, save it again"
        )


def _load_npy(handle: IO[bytes], available: int, where: str) -> np.ndarray:
    start = handle.tell()
    _check_header(handle, available, where)
    handle.seek(start)
    try:
        return np.lib.format.read_array(handle, allow_pickle=False)
    except UNREADABLE as error:
        raise UserError(f"{where}: cannot be read ({_one_line(error)}); the file is truncated or corrupt") from error


def _images_or_values(x: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """uint8 (N, C, H, W) or (N, H, W) stay pixels; everything else becomes float32 (N, ...)."""
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[1] in (1, 3):
        return x, IMAGE
    if x.dtype == np.uint8 and x.ndim == 3:
        return x[:, None], IMAGE
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[3] in (1, 3):
        logger.warning(
            "%s: (N, H, W, C) arrays are modelled as plain values; to model images save x.transpose(0, 3, 1, 2)",
            where,
        )
    if x.dtype.kind not in "biuf":
        raise UserError(f"{where}: holds {x.dtype} values; vaekit models numbers (integers, floats or booleans)")
    values = x.reshape(len(x), 1) if x.ndim == 1 else x  # one value per example is a 1-column table
    _check_finite(values, where)
    with np.errstate(over="ignore"):
        converted = values.astype(np.float32)
    if not np.isfinite(converted).all():
        raise UserError(f"{where}: holds values beyond float32's range (±3.4e38); rescale the data first")
    return converted, ARRAY


def _check_finite(x: np.ndarray, where: str) -> None:
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise UserError(
            f"{where}: holds {int(bad.sum())} NaN or infinite value(s) (the first in example {first}); "
            "remove or impute them first"
        )


def _check_examples(x: np.ndarray, where: str) -> None:
    if x.ndim == 0:
        raise UserError(f"{where}: holds a single number; save examples as an array (N, ...)")
    if len(x) == 0:
        raise UserError(f"{where}: holds no examples (its first dimension is 0); save at least one example")
    if x[0].size == 0:
        raise UserError(f"{where}: examples of shape {x.shape[1:]} hold no values")


def _labels(y: np.ndarray, count: int, where: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer labels as they are; strings become class indices in sorted order."""
    if y.shape != (count,):
        raise UserError(f"{where}: labels of shape {y.shape} do not match {count} examples; save labels (N,)")
    if y.dtype.kind in "US":
        names, index = np.unique(y.astype(str), return_inverse=True)
        return index.astype(np.int64), tuple(str(name) for name in names)
    if y.dtype.kind in "biu" or (y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()):
        return y.astype(np.int64), None
    raise UserError(f"{where}: labels must be integers or strings, not {y.dtype}; save class indices (N,)")


def from_array(x: np.ndarray, y: np.ndarray | None = None, description: str = "array") -> RawData:
    """An array in memory, taken by the rule a .npy file is: uint8 (N, C, H, W) or (N, H, W) are images,
    anything else numeric is float values; labels as a .npz archive's."""
    x = np.asarray(x)
    _check_examples(x, description)
    stored, kind = _images_or_values(x, description)
    labels, class_names = _labels(np.asarray(y), len(x), f"{description} labels") if y is not None else (None, None)
    return RawData(x=stored, y=labels, kind=kind, description=description, class_names=class_names)


def read_npy(config: DataConfig) -> RawData:
    """A .npy file of examples (N, ...), without labels."""
    path = Path(config.source)
    with _open(path) as handle:
        x = _load_npy(handle, path.stat().st_size, str(path))
    _check_examples(x, str(path))
    stored, kind = _images_or_values(x, str(path))
    return RawData(x=stored, y=None, kind=kind, description=f"array {path}")


def _open(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as error:
        raise UserError(f"{path}: cannot be opened ({error.strerror}); check the path and its permissions") from error


def _member(archive: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    info = archive.getinfo(f"{key}.npy")
    try:
        with archive.open(info) as handle:
            return _load_npy(handle, info.file_size, f"{path}[{key!r}]")
    except UserError:
        raise
    except UNREADABLE as error:
        raise UserError(
            f"{path}[{key!r}]: cannot be read ({_one_line(error)}); the archive is corrupt, save it again"
        ) from error


def _data_key(keys: list[str], config: DataConfig, path: Path) -> str:
    if config.array_key in keys:
        return config.array_key
    if config.array_key == DEFAULT_ARRAY_KEY and len(keys) == 1:
        return keys[0]  # numpy.savez(path, data) names its one array arr_0
    raise UserError(
        f"{path}: holds no array {config.array_key!r} (it holds {', '.join(keys) or 'nothing'}); "
        "pass --array-key with the name of the data array"
    )


def read_npz(config: DataConfig) -> RawData:
    """A .npz archive: data under `array_key` (default x), labels under `label_key` (default y) if present."""
    path = Path(config.source)
    try:
        archive = zipfile.ZipFile(path)
    except UNREADABLE as error:
        raise UserError(f"{path}: not a valid .npz archive ({_one_line(error)}); save it with numpy.savez") from error
    with archive:
        keys = [name[: -len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
        data_key = _data_key(keys, config, path)
        x = _member(archive, data_key, path)
        has_labels = config.label_key in keys and config.label_key != data_key
        if config.label_key != DEFAULT_LABEL_KEY and not has_labels:
            raise UserError(
                f"{path}: holds no labels {config.label_key!r} (it holds {', '.join(keys)}); fix --label-key"
            )
        y = _member(archive, config.label_key, path) if has_labels else None
    where = f"{path}[{data_key!r}]"
    _check_examples(x, where)
    stored, kind = _images_or_values(x, where)
    labels, class_names = _labels(y, len(x), f"{path}[{config.label_key!r}]") if y is not None else (None, None)
    return RawData(x=stored, y=labels, kind=kind, description=f"array {path}", class_names=class_names)
