"""Crash-safe files: each is written to a temporary sibling (`.NAME.XXXX.tmp`), flushed to disk and renamed
over the old one, so a kill at any instant leaves either the old file or the new one, never a torn one; a
killed write leaves only its temporary, which the next resume removes.

A temporary is created owner-only (`tempfile.mkstemp`); it is given the permissions a plain `open` would
give (0o666 less the umask) before the rename, so a run is as readable as any other file its owner writes.

A write the file system refuses (a full disk, a read-only mount, no permission) leaves the old file as it
was and raises `CannotWrite`: one line that names the file and says what it needed.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vaekit.errors import UserError

# Refusals of the file system, as distinct from a bug: each is the user's to fix, and named as such.
FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file is larger than this process may write",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a folder on its path is a file",
    errno.ENOENT: "its folder does not exist",
    errno.EIO: "the device reported an input/output error",
}


class CannotWrite(UserError):
    """A file the file system refused to write; the old version, if any, is intact."""

    def __init__(self, path: Path, error: OSError, size: int | None = None):
        self.path, self.error = Path(path), error
        super().__init__(f"{path}: cannot be written ({refusal(error, Path(path).parent, size)})")


def refusal(error: OSError, folder: Path, size: int | None = None) -> str:
    """Why a write failed, in words; for a full disk, how much it needed and how much is free."""
    reason = FILE_SYSTEM_ERRORS.get(error.errno or 0, error.strerror or str(error))
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(folder)
        needed = f"it needs {_size(size)}" if size is not None else ""
        left = f"{_size(free)} free" if free is not None else ""
        reason += f": {', '.join(part for part in (needed, left) if part)}" if needed or left else ""
    return reason


def is_file_system_refusal(error: OSError) -> bool:
    return error.errno in FILE_SYSTEM_ERRORS


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


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
    """Replace `path` by `data` at once: a reader sees the old file or the new one, never part of one."""
    path = Path(path)
    with refusals_named(path, len(data)):
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


def atomic_write_folder(folder: Path, files: Iterable[tuple[str, bytes]]) -> None:
    """Replace the folder `folder` by one holding `files` (name, bytes) at once: they are written to a hidden
    sibling (`.NAME.XXXX.tmp`), which is renamed into place whole; an old folder is removed just before."""
    folder = Path(folder)
    with refusals_named(folder):
        temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            os.chmod(temporary, default_mode(directory=True))  # mkdtemp's 0o700, as mkdir would under the umask
            for name, data in files:
                (temporary / name).write_bytes(data)
            if folder.exists():
                shutil.rmtree(folder)  # the caller has refused unless --overwrite was given
            temporary.rename(folder)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise


def append_durably(path: Path, text: str) -> None:
    """Add `text` to the end of `path` and have it on disk before returning (a log, such as metrics.jsonl).
    A refused write may leave part of the text: the caller's log must tolerate a torn last line."""
    with refusals_named(Path(path), len(text.encode())), open(path, "a") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


@contextmanager
def refusals_named(path: Path, size: int | None = None) -> Iterator[None]:
    """Turn a refusal of the file system while writing `path` (`size` bytes) into a `CannotWrite`; any
    other error is left as it is."""
    try:
        yield
    except OSError as error:
        if not is_file_system_refusal(error):
            raise
        raise CannotWrite(path, error, size) from error


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
