"""One writer per run: an advisory lock that a training process holds on its run directory.

`fcntl.flock` on a lock file in the run: the kernel releases it when the process ends, however it ends,
so a SIGKILL never leaves a stale lock behind, and a lock file left on disk means nothing by itself.
The holder writes its PID and start time into the file so that a second process can say who holds it.
Readers (`sample`, `evaluate`, `info`) take no lock: every run file is replaced atomically, so they
read the last complete version of each.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vaekit.errors import UserError
from vaekit.runs.directory import make_run_directory, no_such_run

LOCK_FILE = ".vaekit-train.lock"

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, one writer is the user's to keep
    fcntl = None  # type: ignore[assignment]


@contextmanager
def run_lock(run_dir: Path, create: bool = True) -> Iterator[None]:
    """Hold the run's writer lock for the block; a `UserError` naming the holder's PID if another process
    holds it. With `create`, a missing run directory is made (and removed again if the block leaves
    nothing in it but the lock: a run refused before it wrote anything leaves no trace)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() and not create:
        raise no_such_run(run_dir)
    created = not run_dir.exists()
    make_run_directory(run_dir)
    path = run_dir / LOCK_FILE
    try:
        with _held(path, run_dir):
            yield
    finally:
        if created and [entry.name for entry in run_dir.iterdir()] == [LOCK_FILE]:
            path.unlink(missing_ok=True)
            run_dir.rmdir()


@contextmanager
def _held(path: Path, run_dir: Path) -> Iterator[None]:
    """flock on `path`, held until the block ends."""
    if fcntl is None:
        yield
        return
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise UserError(f"{path}: cannot be opened for writing ({error.strerror}); training needs a run folder it "
                        "can write") from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(f"{run_dir}: {holder(descriptor)} is training this run; a run has one writer, so wait "
                            "for it to end (or stop it), then continue with --resume, or pick another --out") from None
        try:  # who holds it, for the message of a second process; the lock holds without it (a full disk)
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        except OSError:
            pass
        yield
    finally:
        os.close(descriptor)  # releases the lock


def holder(descriptor: int) -> str:
    """Who holds the lock, from what it wrote: "process 1234 (since 2026-12-01 11:40:02)"."""
    words = os.pread(descriptor, 200, 0).decode(errors="replace").split(maxsplit=1)
    if not words or not words[0].isdigit():
        return "another process"
    since = f" (since {words[1].strip()})" if len(words) > 1 else ""
    return f"process {words[0]}{since}"
