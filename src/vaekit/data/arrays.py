"""NumPy arrays: a `.npy` file (N, ...) or a `.npz` archive with data and optional labels.

uint8 arrays shaped (N, C, H, W) with C in {1, 3}, or (N, H, W), are images (pixels 0..255);
anything else numeric is float data of any rank. Headers are checked against the file's size
before anything is read, so a truncated or doctored file is refused instead of half-read.
"""

from __future__ import annotations

import logging
import math
import struct
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from vaekit.config import DataConfig
from vaekit.data.idx import MAX_DEFLATE_RATIO
from vaekit.data.source import ARRAY, IMAGE, RawData
from vaekit.errors import UserError

logger = logging.getLogger(__name__)
# NumPy's header parser and zipfile raise many types for a malformed file (ValueError, tokenize's
# TokenError, NotImplementedError for exotic zip features, ...): each means "unreadable", never a bug here.
UNREADABLE = Exception
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))
DEFAULT_ARRAY_KEY = "x"  # DataConfig's defaults; an explicit other key that is missing is an error
DEFAULT_LABEL_KEY = "y"
# How many times its compressed size a member's data can be: stored (numpy.savez) is its own size, deflate
# (numpy.savez_compressed) at most 1032 times; other methods have no useful bound, so their data is read
# without trusting the size the archive claims.
EXPANSION = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: MAX_DEFLATE_RATIO}
READ_CHUNK = 1 << 20
MAX_HEADER_BYTES = 10_000  # NumPy's own limit (max_header_size) on the .npy headers it parses


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())  # the CLI prints one line; parser messages may hold newlines


def _check_header(handle: IO[bytes], available: int, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read a .npy header and refuse object arrays or a data size that the bytes on disk cannot hold;
    returns the header's shape, Fortran order and dtype."""
    try:
        version = np.lib.format.read_magic(handle)
        if version not in NPY_VERSIONS:
            raise ValueError(f"unknown .npy format version {version}")
        _check_header_length(handle, version, available)
        # Version 3 differs from 2 only in allowing UTF-8 field names, which the 2.0 reader parses too.
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle)
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
    return shape, fortran_order, dtype


def _check_header_length(handle: IO[bytes], version: tuple[int, int], available: int) -> None:
    """Refuse a header longer than NumPy parses or than the file holds, before NumPy reads it: a file reads
    its claimed length into a buffer of that size first, and a version-2 length field holds up to 4 GB."""
    start = handle.tell()
    field = "<H" if version == (1, 0) else "<I"
    raw = handle.read(struct.calcsize(field))
    if len(raw) < struct.calcsize(field):
        raise ValueError("the header's length is cut off")
    (length,) = struct.unpack(field, raw)
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"its header claims {length} bytes, more than NumPy's {MAX_HEADER_BYTES}")
    if length > available - handle.tell():
        raise ValueError(f"its header claims {length} bytes, more than the file holds")
    handle.seek(start)


def _load_npy(handle: IO[bytes], available: int, where: str, size_known: bool = True) -> np.ndarray:
    """The array of a .npy file or archive member of `available` bytes. `size_known`: `available` is a
    bound the data cannot exceed (a file's size, or an archive member's that its compressed size bounds), so
    the array may be allocated before it is read, as NumPy does; otherwise it grows with the bytes read."""
    start = handle.tell()
    try:
        shape, fortran_order, dtype = _check_header(handle, available, where)
        if not size_known:
            return _read_growing(handle, shape, fortran_order, dtype)
        handle.seek(start)
        return np.lib.format.read_array(handle, allow_pickle=False)
    except UserError:
        raise
    except UNREADABLE as error:
        raise UserError(f"{where}: cannot be read ({_one_line(error)}); the file is truncated or corrupt") from error


def _read_growing(handle: IO[bytes], shape: tuple[int, ...], fortran_order: bool, dtype: np.dtype) -> np.ndarray:
    """The data after a .npy header, read a chunk at a time into a buffer that grows with what arrives, so a
    member claiming terabytes costs only the bytes it holds."""
    needed = math.prod(shape) * dtype.itemsize
    data = bytearray()
    while len(data) < needed and (chunk := handle.read(min(READ_CHUNK, needed - len(data)))):
        data += chunk
    if len(data) < needed:
        raise ValueError(f"the data ends after {len(data)} of {needed} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


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


def _member(archive: zipfile.ZipFile, key: str, path: Path, archive_size: int) -> np.ndarray:
    """One member's array. The zip headers' sizes are claims: a member may not claim more than its compressed
    bytes can expand to (nothing for numpy.savez's stored members, 1032 times for savez_compressed's deflated
    ones), nor more compressed bytes than the archive holds, before anything is allocated for it."""
    info = archive.getinfo(f"{key}.npy")
    where = f"{path}[{key!r}]"
    expansion = EXPANSION.get(info.compress_type)
    if info.compress_size > archive_size or (expansion is not None and info.file_size > expansion * info.compress_size):
        raise UserError(
            f"{where}: the archive claims {info.file_size} bytes from {info.compress_size} compressed in a file of "
            f"{archive_size} bytes, which cannot hold them; the archive is corrupt, save it again"
        )
    try:
        with archive.open(info) as handle:
            return _load_npy(handle, info.file_size, where, size_known=expansion is not None)
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
        size = path.stat().st_size
        x = _member(archive, data_key, path, size)
        has_labels = config.label_key in keys and config.label_key != data_key
        if config.label_key != DEFAULT_LABEL_KEY and not has_labels:
            raise UserError(
                f"{path}: holds no labels {config.label_key!r} (it holds {', '.join(keys)}); fix --label-key"
            )
        y = _member(archive, config.label_key, path, size) if has_labels else None
    where = f"{path}[{data_key!r}]"
    _check_examples(x, where)
    stored, kind = _images_or_values(x, where)
    labels, class_names = _labels(y, len(x), f"{path}[{config.label_key!r}]") if y is not None else (None, None)
    return RawData(x=stored, y=labels, kind=kind, description=f"array {path}", class_names=class_names)
