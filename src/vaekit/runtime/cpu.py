"""CPU settings that make training and evaluation fast without changing a number.

torch's thread count, flushing of denormal floats, and glibc's habit of returning freed memory to
the kernel: each measured in benchmarks/ and each applied only around the work that needs it
(`cpu_settings` for training, `vaekit evaluate`).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch


@contextmanager
def flush_denormals() -> Iterator[None]:
    """CPU arithmetic with denormal floats (below 1.2e-38) flushed to zero for the block; as before after it.

    Adam's moments of weights that never get a gradient (Fashion-MNIST's always-black border pixels)
    decay through the denormal range, where a CPU is many times slower per operation (docs/
    performance.md gives what it cost). Numbers that small move no weight at float32 precision: 3 epochs
    of the reference run gave the same weights bit for bit with and without (benchmarks/train_speed.py).

    The setting is per thread (the CPU's MXCSR register), and `torch.set_flush_denormal` reaches only
    the calling one: the OpenMP threads that run the other half of every parallel op on 2 cores kept
    computing with denormals, and Adam's step stayed slow. So the setting is made on every thread of the
    OpenMP team too (`on_every_openmp_thread`).
    """
    was_flushed = bool(torch.tensor(2.0**-126) / 2 == 0)  # half the smallest normal float32 is a denormal
    on_every_openmp_thread(lambda: torch.set_flush_denormal(True))
    try:
        yield
    finally:
        on_every_openmp_thread(lambda: torch.set_flush_denormal(was_flushed))


def on_every_openmp_thread(function: Callable[[], object]) -> None:
    """Call `function` once on each thread of the OpenMP team that runs torch's parallel CPU ops
    (the calling thread among them), through the runtime's own `GOMP_parallel` entry point; only on
    the calling thread where torch uses no OpenMP runtime that vaekit can find."""
    runtime = _openmp_runtime()
    threads = torch.get_num_threads()
    if runtime is None or threads == 1:
        function()
        return
    errors: list[BaseException] = []

    def each(_: object) -> None:
        try:
            function()
        except BaseException as error:  # noqa: BLE001 - raised again on the calling thread
            errors.append(error)

    callback = _OPENMP_TASK(each)
    runtime.GOMP_parallel(callback, None, threads, 0)
    if errors:
        raise errors[0]


_OPENMP_TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.lru_cache(maxsize=1)
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP library torch loaded (libgomp, or Intel's libiomp5, which also exports GOMP_parallel).

    Other packages bring their own copies (scikit-learn's `scikit_learn.libs/libgomp-*.so`, loaded by
    the digits data), each with its own threads: torch's own folder is searched first, then the
    system's libraries, and the copies other wheels vendor in a `.libs` folder last."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "omp" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    torch_folder = os.path.dirname(torch.__file__) + os.sep
    for path in sorted(paths, key=lambda path: (not path.startswith(torch_folder), ".libs/" in path, path)):
        name = path.rsplit("/", 1)[-1]
        if name.startswith(("libgomp", "libiomp5")):
            try:
                runtime = ctypes.CDLL(path)
                runtime.GOMP_parallel.argtypes = [_OPENMP_TASK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                runtime.GOMP_parallel.restype = None
                return runtime
            except (OSError, AttributeError):
                continue
    return None


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to `threads` for the block (None leaves them alone), and restored after it."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(previous)


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt's parameters, from glibc's malloc.h
KEPT = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20}
GLIBC_DEFAULTS = {M_MMAP_THRESHOLD: 128 << 10, M_TRIM_THRESHOLD: 128 << 10, M_TOP_PAD: 0}  # malloc.c's own
_kept_depth = 0  # blocks of `freed_memory_kept` now open


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc's, absent from other C libraries
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system.

    Each training step allocates and frees megabytes of activations and gradients, each chunk of
    importance samples tens of MiB; by default glibc hands that back to the kernel and page-faults it
    in again on the next step, at a measured cost (docs/performance.md). Peak memory is unchanged, but
    the process keeps its peak. Process-wide and left on (`vaekit evaluate`, which ends when it is done;
    training keeps it for its own block, `freed_memory_kept`); does nothing where the C library is not glibc.
    """
    libc = _libc()
    if libc is not None:
        for parameter, value in KEPT.items():
            libc.mallopt(parameter, value)


@contextmanager
def freed_memory_kept() -> Iterator[None]:
    """`keep_freed_memory` for the block; after it glibc's defaults again and what it kept handed back to the
    system (`malloc_trim`), so that a process going on after training (a notebook; a run's pictures and report)
    neither keeps training's freed memory nor piles its own onto it. Blocks may nest."""
    global _kept_depth
    libc = _libc()
    if libc is None:
        yield
        return
    keep_freed_memory()
    _kept_depth += 1
    try:
        yield
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            for parameter, value in GLIBC_DEFAULTS.items():
                libc.mallopt(parameter, value)
            libc.malloc_trim(0)


@contextmanager
def cpu_settings(device: torch.device, threads: int | None) -> Iterator[None]:
    """What training runs under: `threads` CPU threads, and on a CPU denormals flushed and freed memory
    kept for reuse (after the block: the threads and the flush as they were, glibc's defaults)."""
    on_cpu = device.type == "cpu"
    with (torch_threads(threads), flush_denormals() if on_cpu else nullcontext(),
          freed_memory_kept() if on_cpu else nullcontext()):
        yield
