"""Image folders larger than memory: the files stay on disk and are decoded batch by batch.

`ImageFiles` stands where the in-memory reader puts its (N, C, H, W) uint8 array: it has the
array's length, shape and dtype, indexing it by examples gives another `ImageFiles` (so the usual
train/validation/test split applies unchanged), and `np.asarray` decodes, for the few pictures a
run draws. Training reads it through `stored_batches`: DataLoader worker processes decode the files
with Pillow, exactly as the in-memory reader does, a bounded number of batches ahead
(`PREFETCH_BATCHES` per worker), so memory holds the file list and a few batches, not the data.

A folder streams when `stream = true`, or, left unset, when its decoded pixels would take more
than `STREAM_ABOVE_MEMORY_FRACTION` of this machine's memory; every other source is read into
memory as before. The pixels are the in-memory reader's, the split and the seeded order too, so
a streamed run trains exactly as an in-memory one and resumes exactly from any checkpoint. One
difference: with dynamic binarization, the fixed binarization of the validation and test images
is drawn per image (seeded by split_seed and the image's place in the folder), not per split.
"""

from __future__ import annotations

import logging
import os
import signal
import warnings
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image
from torch.utils.data import DataLoader, Dataset

from vaekit.config import DataConfig
from vaekit.data.images import (
    DECODE_ERRORS,
    GREY_MODES,
    IMAGE_SUFFIXES,
    check_sizes,
    decode_image,
    folder_labels,
    image_files,
    relative_names,
    visible_files,
)
from vaekit.data.source import IMAGE, RawData
from vaekit.errors import UserError

logger = logging.getLogger(__name__)
# The in-memory path holds decoded pixels about three times over while it reads and splits them
# (decoded list, stacked array, splits), and the trainer a fourth copy: a quarter of memory is the most
# it can take on.
STREAM_ABOVE_MEMORY_FRACTION = 0.25
ASSUMED_MEMORY_BYTES = 8 << 30  # where the platform does not say how much memory it has
PREFETCH_BATCHES = 2  # per worker: enough to hide decode time behind a step, and a fixed bound on memory
ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


class ImageFiles:
    """A lazy (N, C, H, W) uint8 array of image files, decoded as the in-memory reader would.

    `positions` picks the examples (indices into `files`), so a split is a view that shares the file
    list. `binarize_seed`, when set, binarizes each image by a draw seeded by it and the image's
    place in the folder: fixed, whatever the order or worker that decodes it.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(
        self, files: list[str], event_shape: tuple[int, int, int], channels: int | None,
        image_size: tuple[int, int] | None, positions: np.ndarray | None = None, binarize_seed: int | None = None,
    ):
        self.files, self.event_shape = files, tuple(event_shape)
        self.channels, self.image_size, self.binarize_seed = channels, image_size, binarize_seed
        self.positions = np.arange(len(files)) if positions is None else np.asarray(positions, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.event_shape)

    def _view(self, positions: np.ndarray, binarize_seed: int | None) -> ImageFiles:
        return ImageFiles(self.files, self.event_shape, self.channels, self.image_size, positions, binarize_seed)

    def __getitem__(self, key: Any) -> Any:
        """An integer decodes one image (C, H, W); a slice or an index array gives a lazy view."""
        if isinstance(key, (int, np.integer)):
            return self.decode(int(key))
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        return self._view(self.positions[key], self.binarize_seed)

    def binarized(self, seed: int) -> ImageFiles:
        return self._view(self.positions, seed)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        pixels = np.stack([self.decode(i) for i in range(len(self))]) if len(self) else np.zeros(self.shape, np.uint8)
        return pixels if dtype is None else pixels.astype(dtype)

    def decode(self, index: int) -> np.ndarray:
        """Example `index` as uint8 (C, H, W): grey images repeat into RGB in a colour folder."""
        position = int(self.positions[index])
        path = Path(self.files[position])
        pixels = decode_image(path, self.channels, self.image_size)
        pixels = (
            np.repeat(pixels[None], self.event_shape[0], axis=0) if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        )
        if pixels.shape != self.event_shape:
            raise UserError(
                f"{path}: decodes to {pixels.shape[1]}x{pixels.shape[2]} with {pixels.shape[0]} channel(s), but the "
                f"folder's images are {self.event_shape[1]}x{self.event_shape[2]} with {self.event_shape[0]}; pass "
                f"--image-size {self.event_shape[1]}x{self.event_shape[2]} to resize them all"
            )
        if self.binarize_seed is not None:
            drawn = np.random.default_rng([self.binarize_seed, position]).random(pixels.shape, dtype=np.float32)
            pixels = ((drawn < pixels / np.float32(255.0)) * 255).astype(np.uint8)
        return np.ascontiguousarray(pixels)


# ----- reading a folder as ImageFiles -----------------------------------------------------------
def _header(path: Path, config: DataConfig) -> tuple[tuple[int, int], bool]:
    """(H, W) and whether the image is grey, as the in-memory reader would decode it, from its header."""
    try:
        # Pillow warns about odd metadata (and large images) on stderr; decode_image hides the same warnings.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                # A PNG's EXIF may follow its pixels, and getexif() would decode them to find it: read it
                # only where the header has it. A rotation missed here stops the run at that file, by name.
                has_exif = image.format != "PNG" or "exif" in image.info
                if has_exif and image.getexif().get(ExifTags.Base.Orientation) in ROTATING_ORIENTATIONS:
                    width, height = height, width
                grey = image.mode in GREY_MODES
    except DECODE_ERRORS:
        pixels = decode_image(path, config.channels, config.image_size)  # raises the reader's own message
        (height, width), grey = pixels.shape[:2], pixels.ndim == 2
    if config.image_size is not None:
        height, width = config.image_size
    return (height, width), grey if config.channels is None else config.channels == 1


def read_streamed_folder(config: DataConfig) -> RawData:
    """An image folder as `ImageFiles`: only the headers are read now, to learn the images' shape."""
    folder = Path(config.source)
    if not folder.is_dir():
        raise UserError(f"{folder}: is not a folder; --stream reads a folder of image files")
    files = image_files(folder)
    headers = [_header(path, config) for path in files]
    check_sizes(folder, files, [size for size, _ in headers])
    (height, width), _ = headers[0]
    channels = config.channels or (1 if all(grey for _, grey in headers) else 3)
    labels, class_names = folder_labels(folder, files)
    images = ImageFiles([str(path) for path in files], (channels, height, width), config.channels, config.image_size)
    logger.info("%s: %d images stream from disk", folder, len(files))
    return RawData(x=images, y=labels, kind=IMAGE, description=f"image folder {folder}", class_names=class_names,
                   names=relative_names(folder, files))


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # platforms without these names
        return ASSUMED_MEMORY_BYTES


def estimated_decoded_bytes(config: DataConfig) -> int:
    """The folder's decoded size, guessed from its first image: the count times its pixels."""
    folder = Path(config.source)
    files = [path for path in visible_files(folder) if path.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        return 0
    (height, width), grey = _header(files[0], config)
    return len(files) * height * width * (1 if grey else 3)


def too_large_for_memory(config: DataConfig) -> bool:
    """Whether an image folder's decoded pixels would take more than STREAM_ABOVE_MEMORY_FRACTION of memory."""
    return estimated_decoded_bytes(config) > STREAM_ABOVE_MEMORY_FRACTION * memory_bytes()


def is_streamed(stored: Any) -> bool:
    return isinstance(stored, ImageFiles)


# ----- batches ------------------------------------------------------------------------------------
class _Decoding(Dataset):
    """The images of an `ImageFiles` for DataLoader workers; a file that fails gives its message, so
    that the training process can raise it as the one-line error it is."""

    def __init__(self, images: ImageFiles):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray | str:
        try:
            return self.images.decode(index)
        except UserError as error:
            return str(error)


def _collate(items: list[np.ndarray | str], event_shape: tuple[int, ...]) -> torch.Tensor | str:
    failures = [item for item in items if isinstance(item, str)]
    if failures:
        return failures[0]
    return torch.from_numpy(np.stack(items)) if items else torch.zeros((0, *event_shape), dtype=torch.uint8)


def _ignore_stop_signals(worker: int) -> None:
    """Ctrl-C reaches every process of the terminal's group; the training process turns it into a
    checkpoint, for which its workers must live on (they end with it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stored_batches(
    stored: np.ndarray | ImageFiles, index_batches: Iterable[np.ndarray], workers: int = 0, pin_memory: bool = False,
) -> Iterator[torch.Tensor]:
    """The examples of each index array of `index_batches`, in stored form, as CPU tensors.

    An array in memory is indexed; `ImageFiles` are decoded by `workers` DataLoader processes (none:
    in this process), at most `PREFETCH_BATCHES` batches ahead each.
    """
    if not is_streamed(stored):
        stored = torch.as_tensor(stored)
        for index in index_batches:
            yield stored[torch.as_tensor(index)]
        return
    loader = DataLoader(
        # A generator, not a list: the epoch's index lists are made as the workers ask for them.
        _Decoding(stored), batch_sampler=(np.asarray(index).tolist() for index in index_batches),  # type: ignore[arg-type]
        num_workers=workers, collate_fn=partial(_collate, event_shape=stored.event_shape), pin_memory=pin_memory,
        prefetch_factor=PREFETCH_BATCHES if workers else None,
        worker_init_fn=_ignore_stop_signals if workers else None,
    )
    for batch in loader:
        if isinstance(batch, str):
            raise UserError(batch)
        yield batch
