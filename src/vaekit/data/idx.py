"""IDX files (MNIST layout): Fashion-MNIST from Debian's dataset-fashion-mnist, MNIST, or any such folder."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vaekit.data.source import IMAGE, RawData
from vaekit.errors import UserError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DIR = Path("/usr/share/datasets/mnist")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IDX_UBYTE = 0x08  # the only element type these datasets use
READ_CHUNK = 1 << 20
MAX_DEFLATE_RATIO = 1032  # deflate's largest possible expansion: a bound on what a .gz file can hold
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
HOW_TO_GET = {
    "fashion-mnist": (
        "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir DIR holding the four IDX files"
    ),
    "mnist": "pass --data-dir DIR holding MNIST's four IDX files (train-images-idx3-ubyte.gz, ...)",
}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as a uint8 array of the shape its header states.

    The data is decompressed straight into the array, a chunk at a time: decompressing the whole file
    to bytes first took 3x the data's size at the peak (140 MB for Fashion-MNIST's 47 MB of training
    images) and left 15 MB of freed buffers resident for the rest of the run.
    """
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as file:
            shape = _read_header(file, path)
            array = _allocate(path, shape)
            filled = _read_into(file, array.reshape(-1))
            extra = 0
            while chunk := file.read(READ_CHUNK):  # reaching the end also checks a gzip file's CRC
                extra += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(
            f"{path}: cannot be read ({error}); the file is truncated or corrupt, fetch it again"
        ) from error
    if filled != array.size or extra:
        raise UserError(
            f"{path}: holds {filled + extra} data bytes but its header promises {array.size} "
            f"for shape {shape}; the file is truncated or corrupt"
        )
    return array


def _read_header(file: BinaryIO, path: Path) -> tuple[int, ...]:
    magic = file.read(4)
    if len(magic) < 4:
        raise UserError(f"{path}: too short to be an IDX file; fetch it again")
    zero, element_type, rank = struct.unpack(">HBB", magic)
    if zero != 0 or element_type != IDX_UBYTE or rank == 0:
        raise UserError(f"{path}: wrong IDX magic number {magic.hex()}; expected unsigned-byte IDX (0000080N)")
    dimensions = file.read(4 * rank)
    if len(dimensions) < 4 * rank:
        raise UserError(f"{path}: IDX header is truncated; fetch the file again")
    return struct.unpack(f">{rank}I", dimensions)


def _allocate(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An array for the promised data, once the file is known to be large enough to hold it (a damaged
    header can promise terabytes)."""
    header = 4 + 4 * len(shape)
    expected = math.prod(shape)
    size = path.stat().st_size
    if path.suffix != ".gz" and size - header != expected:
        raise UserError(
            f"{path}: holds {size - header} data bytes but its header promises {expected} "
            f"for shape {shape}; the file is truncated or corrupt"
        )
    if expected > MAX_DEFLATE_RATIO * size:
        raise UserError(
            f"{path}: its header promises {expected} data bytes for shape {shape}, more than a file of "
            f"{size} bytes can hold; the file is truncated or corrupt"
        )
    try:
        return np.empty(shape, dtype=np.uint8)
    except (ValueError, MemoryError) as error:
        raise UserError(f"{path}: IDX shape {shape} cannot be held in memory ({error}); the file is corrupt") from error


def _read_into(file: BinaryIO, flat: np.ndarray) -> int:
    """Fill `flat` (a 1-D view) from the file; returns the bytes read, fewer where the file ends first.

    A chunk at a time: gzip decompresses a read into a temporary of the read's size before copying.
    """
    view, filled = memoryview(flat), 0
    while filled < len(view):
        count = file.readinto(view[filled : filled + READ_CHUNK])
        if not count:
            break
        filled += count
    return filled


def _find(directory: Path, stem: str, hint: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise UserError(f"{directory}: no {stem}[.gz]; {hint}")


def read_idx_dir(directory: Path, name: str) -> RawData:
    """The train and test images and labels of one IDX folder."""
    hint = HOW_TO_GET.get(name, "the folder must hold the four IDX files in MNIST's layout")
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder for {name}; {hint}")
    arrays = {key: read_idx(_find(directory, stem, hint)) for key, stem in FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise UserError(f"{directory}: {split} images must be (N, H, W) and labels (N,) in IDX")
        if len(images) != len(labels):
            raise UserError(
                f"{directory}: {len(images)} {split} images but {len(labels)} labels; "
                "the image and label files do not belong together"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise UserError(f"{directory}: train and test images differ in size")
    return RawData(
        x=arrays["train_images"][:, None],
        y=arrays["train_labels"].astype(np.int64),
        test_x=arrays["test_images"][:, None],
        test_y=arrays["test_labels"].astype(np.int64),
        kind=IMAGE,
        description=f"{name} ({directory})",
        class_names=FASHION_CLASSES if name == "fashion-mnist" else tuple(str(d) for d in range(10)),
    )
