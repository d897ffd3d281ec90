"""IDX files (MNIST layout): Fashion-MNIST from Debian's dataset-fashion-mnist, MNIST, or any such folder."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from vaekit.data.source import IMAGE, RawData
from vaekit.errors import UserError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DIR = Path("/usr/share/datasets/mnist")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IDX_UBYTE = 0x08  # the only element type these datasets use
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
HOW_TO_GET = {
    "fashion-mnist": "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir DIR holding the four IDX files",
    "mnist": "pass --data-dir DIR holding MNIST's four IDX files (train-images-idx3-ubyte.gz, ...)",
}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as a uint8 array of the shape its header states."""
    try:
        blob = path.read_bytes()
        if path.suffix == ".gz":
            blob = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path}: cannot be read ({error}); the file is truncated or corrupt, fetch it again") from error
    if len(blob) < 4:
        raise UserError(f"{path}: too short to be an IDX file; fetch it again")
    zero, element_type, rank = struct.unpack(">HBB", blob[:4])
    if zero != 0 or element_type != IDX_UBYTE or rank == 0:
        raise UserError(f"{path}: wrong IDX magic number {blob[:4].hex()}; expected unsigned-byte IDX (0000080N)")
    header = 4 + 4 * rank
    if len(blob) < header:
        raise UserError(f"{path}: IDX header is truncated; fetch the file again")
    shape = struct.unpack(f">{rank}I", blob[4:header])
    expected = int(np.prod(shape))
    if len(blob) - header != expected:
        raise UserError(
            f"{path}: holds {len(blob) - header} data bytes but its header promises {expected} "
            f"for shape {shape}; the file is truncated or corrupt"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


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
