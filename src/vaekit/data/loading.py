"""The one entry point to data: which reader a source needs, and its train/validation/test splits.

Every source, in memory or streamed from disk, goes `read_source` -> `RawData` -> `split_source` -> `Splits`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vaekit.config import DataConfig
from vaekit.data.arrays import read_npy, read_npz
from vaekit.data.audio import is_audio, read_audio
from vaekit.data.digits import read_digits
from vaekit.data.idx import FASHION_MNIST_DIR, MNIST_DIR, read_idx_dir
from vaekit.data.images import IMAGE_SUFFIXES, read_image_folder, visible_files
from vaekit.data.source import RawData, Splits, split_source
from vaekit.data.streaming import read_streamed_folder, too_large_for_memory
from vaekit.data.tables import read_table
from vaekit.data.text import is_text, read_text
from vaekit.errors import UserError

NAMED_SOURCES = ("digits", "fashion-mnist", "mnist")


def _read_named_idx(config: DataConfig) -> RawData:
    default = FASHION_MNIST_DIR if config.source == "fashion-mnist" else MNIST_DIR
    if config.source in ("fashion-mnist", "mnist"):
        directory = Path(config.data_dir) if config.data_dir else default
        return read_idx_dir(directory, config.source)
    return read_idx_dir(Path(config.source), "IDX folder")


READERS: dict[str, Callable[[DataConfig], RawData]] = {
    "digits": lambda config: read_digits(),
    "idx": _read_named_idx,
    "images": read_image_folder,
    "npy": read_npy,
    "npz": read_npz,
    "csv": read_table,
    "audio": read_audio,
    "text": read_text,
}


def detect_format(config: DataConfig) -> str:
    """The reader for a source: forced by `data_format`, else from the name or what the path holds."""
    named = config.source in NAMED_SOURCES
    path = Path(config.source)
    if not named and not path.exists():
        raise UserError(
            f"{path}: no such file or folder; pass --data digits, fashion-mnist, mnist or the path of your data"
        )
    if config.data_format != "auto":
        return config.data_format
    if named:
        return "digits" if config.source == "digits" else "idx"
    if path.is_dir():
        if any(path.glob("*-idx3-ubyte*")):
            return "idx"
        files = visible_files(path)
        if any(is_audio(file) for file in files):
            return "audio"
        # A folder of images may hold a README.txt: text only where there are no images
        if any(is_text(file) for file in files) and not any(file.suffix.lower() in IMAGE_SUFFIXES for file in files):
            return "text"
        return "images"
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    by_suffix = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".csv.gz": "csv"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    if is_audio(path):
        return "audio"
    if is_text(path):
        return "text"
    raise UserError(
        f"{path}: cannot tell what kind of data this is from its name; "
        "pass --data-format with one of images, npy, npz, csv, idx, audio, text"
    )


def should_stream(config: DataConfig) -> bool:
    """`stream` when set; otherwise whether an image folder is too large to hold decoded in memory."""
    if config.stream is not None:
        return config.stream
    if detect_format(config) != "images":
        return False
    return too_large_for_memory(config)


def read_source(config: DataConfig) -> RawData:
    """The configured source as read: in memory, or a folder streamed from disk (when asked or too large)."""
    data_format = detect_format(config)
    if should_stream(config):
        if data_format != "images":
            raise UserError(
                f"{config.source}: stream = true applies to image folders, and this is {data_format} data, which is "
                "read into memory; drop --stream"
            )
        return read_streamed_folder(config)
    reader = READERS.get(data_format)
    if reader is None:
        raise UserError(f"{config.source}: data format {data_format!r} is not supported yet")
    return reader(config)


def load_data(config: DataConfig) -> Splits:
    """The one way to data: read the configured source and split it into train, validation and test."""
    return split_source(read_source(config), config)


