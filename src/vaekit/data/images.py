"""A folder of image files (PNG, JPEG, BMP, ...), decoded with Pillow; class sub-folders become labels.

Files whose names do not end like an image (README.txt, labels.csv, .DS_Store) are skipped with
one warning that counts them: folders of downloaded images often carry such companions. A file
that is named like an image but cannot be decoded (empty, truncated, corrupt) stops the read
with its name, because silently training without it would hide a broken copy of the data.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vaekit.config import DataConfig
from vaekit.data.source import IMAGE, RawData
from vaekit.errors import UserError

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi",
})
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# Pillow's decoders raise many types for a broken file (OSError, SyntaxError, struct.error, ...):
# each means "not decodable", never a bug here.
DECODE_ERRORS = Exception


def visible_files(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted, skipping hidden files and folders (.git, .DS_Store)."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        found.append(path)
    return found


def image_files(folder: Path) -> list[Path]:
    files = visible_files(folder)
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    others = [path for path in files if path.suffix.lower() not in IMAGE_SUFFIXES]
    if not images:
        found = f"; it holds only {len(others)} other file(s) such as {others[0].name}" if others else ""
        raise UserError(
            f"{folder}: holds no images (PNG, JPEG, BMP, GIF, TIFF, WebP){found}; "
            "point --data at a folder of images, or at a .npy, .npz or .csv file"
        )
    if others:
        logger.warning(
            "%s: skipped %d file(s) that are not images (such as %s)",
            folder,
            len(others),
            others[0].relative_to(folder),
        )
    return images


def _pixels(image: Image.Image, grey: bool) -> np.ndarray:
    """The decoded image as uint8 (H, W) if `grey`, else (H, W, 3)."""
    if image.mode in SIXTEEN_BIT_MODES and grey:
        # Pillow's convert("L") clips 16-bit values at 255; scale the full range down instead.
        wide = np.asarray(image, dtype=np.int64)
        return (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
    return np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8)


def decode_image(path: Path, channels: int | None, size: tuple[int, int] | None) -> np.ndarray:
    """One file as uint8 (H, W) grey or (H, W, 3) RGB; `channels` None keeps what the file holds."""
    if path.stat().st_size == 0:
        raise UserError(f"{path}: is empty (0 bytes); remove it or copy the image again")
    buffer = None
    try:
        # Decoded from the file's bytes, not the file: Pillow reads a chunk of the length its header claims,
        # and a file's read allocates that length first (2 GB for a damaged PNG), where memory's stops at the end.
        buffer = io.BytesIO(path.read_bytes())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd metadata it can still decode
            with Image.open(buffer) as image:
                image.load()
                image = ImageOps.exif_transpose(image)  # photos stored sideways with an EXIF rotation tag
                grey = channels == 1 or (channels is None and image.mode in GREY_MODES)
                pixels = _pixels(image, grey)
    except DECODE_ERRORS as error:
        reason = str(error).replace(f"'{path}'", "").replace(repr(buffer), "")  # without the file again
        reason = " ".join(reason.split())  # one line
        raise UserError(
            f"{path}: cannot be decoded as an image ({reason}); the file is truncated or corrupt, "
            "remove it or copy it again"
        ) from error
    if size is not None and pixels.shape[:2] != tuple(size):
        pixels = np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), Image.Resampling.LANCZOS))
    return pixels


def check_sizes(folder: Path, files: list[Path], sizes: list[tuple[int, int]]) -> None:
    """Refuse a folder of mixed (height, width) sizes, listing them with one file of each, and the
    --image-size that fixes it."""
    labels = [f"{h}x{w}" for h, w in sizes]
    counts = Counter(labels)
    if len(counts) == 1:
        return
    example = {}
    for path, label in zip(files, labels):
        example.setdefault(label, path.relative_to(folder))
    (common, _), *rest = counts.most_common()
    listed = ", ".join(f"{count} are {size} such as {example[size]}" for size, count in rest[:4])
    listed += ", ..." if len(rest) > 4 else ""
    raise UserError(
        f"{folder}: images differ in size ({counts[common]} are {common} such as {example[common]}, {listed}); "
        f"pass --image-size {common} to resize them all"
    )


def _stack(pictures: list[np.ndarray]) -> np.ndarray:
    """(N, C, H, W) uint8; grey pictures are repeated into RGB when others are in colour."""
    if any(p.ndim == 3 for p in pictures):
        pictures = [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p for p in pictures]
        return np.stack(pictures).transpose(0, 3, 1, 2)
    return np.stack(pictures)[:, None]


def folder_labels(folder: Path, files: list[Path]) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Labels from the first-level sub-folder of each file, when every image lies in one."""
    parts = [path.relative_to(folder).parts for path in files]
    classes = [part[0] if len(part) > 1 else None for part in parts]
    if any(name is None for name in classes):
        in_folders = sum(name is not None for name in classes)
        if in_folders:
            logger.warning(
                "%s: %d images lie directly in the folder, not in a class sub-folder; reading without labels",
                folder, len(files) - in_folders,
            )
        return None, None
    names = tuple(sorted(set(classes)))  # type: ignore[arg-type]
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[name] for name in classes], dtype=np.int64), names


def read_image_folder(config: DataConfig) -> RawData:
    """Every image under the folder `config.source` as (N, C, H, W) uint8, labelled by class sub-folder."""
    folder = Path(config.source)
    if not folder.is_dir():
        raise UserError(f"{folder}: is not a folder; --data-format images needs a folder of image files")
    files = image_files(folder)
    pictures = [decode_image(path, config.channels, config.image_size) for path in files]
    check_sizes(folder, files, [p.shape[:2] for p in pictures])
    labels, class_names = folder_labels(folder, files)
    return RawData(
        x=_stack(pictures), y=labels, kind=IMAGE, description=f"image folder {folder}", class_names=class_names,
        names=relative_names(folder, files),
    )


def relative_names(folder: Path, files: list[Path]) -> tuple[str, ...]:
    """Each file's path relative to the folder, with forward slashes on every platform."""
    return tuple(path.relative_to(folder).as_posix() for path in files)
