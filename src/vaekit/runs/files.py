"""Crash-safe files: each is written to a temporary sibling (`.NAME.XXXX.tmp`), flushed to disk and renamed
over the old one, so a kill at any instant leaves either the old file or the new one, never a torn one; a
killed write leaves only its temporary, which the next resume removes.

A temporary is created owner-only (`tempfile.mkstemp`); it is given the permissions a plain `open` would
give (0o666 less the umask) before the rename, so a run is as readable as any other file its owner writes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask. It can be read only by setting it, so it is set back at once; meanwhile it is
    owner-only, so that what another thread creates in that instant is no more open than mkstemp makes it."""
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def default_mode(directory: bool = False) -> int:
    """The permissions `open` (or, for a folder, `mkdir`) gives what it creates: 0o666 (0o777) less the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            os.chmod(temporary, default_mode())  # mkstemp's 0o600 would keep out those the umask lets read
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
