"""CPU settings that make training and evaluation fast without changing a number.

torch's thread count, flushing of denormal floats, and glibc's habit of returning freed memory to
the kernel: each measured in benchmarks/ and each applied only around the work that needs it
(`Trainer.cpu_settings`, `vaekit evaluate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def flush_denormals() -> Iterator[None]:
    """CPU arithmetic with denormal floats (below 1.2e-38) flushed to zero for the block; as before after it.

    Adam's moments of weights that never get a gradient (Fashion-MNIST's always-black border pixels)
    decay through the denormal range, where a CPU takes ~100x longer per operation: from the second
    epoch on they made the optimizer step 3.5x slower and the whole epoch 35% slower. Numbers that
    small move no weight at float32 precision: 3 epochs of the reference run gave the same weights bit
    for bit with and without (benchmarks/train_speed.py).
    """
    was_flushed = bool(torch.tensor(2.0**-126) / 2 == 0)  # half the smallest normal float32 is a denormal
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushed)


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


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system.

    Each training step allocates and frees megabytes of activations and gradients, each chunk of
    importance samples tens of MiB; by default glibc hands that back to the kernel and page-faults it
    in again on the next step. That cost a third of the CPU time of a K = 5000 evaluation and a fifth
    of a training step of the reference network (system time; benchmarks/). Peak memory is unchanged,
    but the process keeps its peak until it ends. Process-wide and left on; does nothing where the C
    library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_top_pad, 64 << 20)
