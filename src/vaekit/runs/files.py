"""Crash-safe files: each is written to a temporary sibling (`.NAME.XXXX.tmp`), flushed to disk and renamed
over the old one, so a kill at any instant leaves either the old file or the new one, never a torn one; a
killed write leaves only its temporary, which the next resume removes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_stale_temporaries(directory: Path, names: tuple[str, ...]) -> None:
    """Delete the temporaries `atomic_write_bytes` leaves behind when killed mid-write."""
    for name in names:
        for temporary in Path(directory).glob(f".{name}.*.tmp"):
            temporary.unlink(missing_ok=True)
