"""Data-parallel training over several processes and machines, launched by `torchrun`.

torchrun starts one process per GPU (or per CPU worker) and tells each its place through the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `joined_world` reads them and
joins PyTorch's process group: gloo for CPU tensors, and NCCL for CUDA tensors where CUDA is there.
A plain `vaekit train` finds none of them and stays one process with no set-up at all.

How a run is divided, so that N processes train the model one process would:

- `batch_size` is the global batch. Every rank computes the same seeded permutation of an epoch
  and takes its contiguous part of every global batch (`World.shard`).
- ε and the uniforms of dynamic binarization are drawn for the whole global batch from the
  same-seeded generator on every rank, and each rank keeps its part: the draws are a one-process
  run's, and the generators stay equal on all ranks, so rank 0's checkpoint holds what all need.
- Each rank's loss is its share of the global batch's loss times the number of ranks, so that
  DistributedDataParallel's mean of the ranks' gradients is the gradient of the batch-mean loss,
  whatever the shard sizes (a last partial batch, or an empty shard).

What is left to differ from one process is the order of floating-point sums.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from vaekit.errors import UserError

logger = logging.getLogger(__name__)
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for every process it starts
Result = TypeVar("Result")


@dataclass(frozen=True)
class World:
    """This process's place among those training one run; one process alone is `World()`.

    The collective methods are no-ops for one process, so code written for N runs unchanged on one.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the index of this process on its machine: its GPU

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory and shows progress."""
        return self.rank == 0

    def shard(self, count: int) -> slice:
        """This rank's contiguous part of `count` examples; parts differ in size by at most one."""
        return slice(count * self.rank // self.size, count * (self.rank + 1) // self.size)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks, in place; returns it."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum over the ranks, in place: for flags any rank may raise."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def from_main(self, work: Callable[[], Result]) -> Result:
        """Run `work` on rank 0 alone and give every rank its result (it must pickle).

        A `UserError` on rank 0 is raised on every rank, so that all stop together instead of the
        others waiting for rank 0 in the next collective.
        """
        if self.size == 1:
            return work()
        outcome: list[object] = [None]
        if self.is_main:
            try:
                outcome[0] = ("result", work())
            except UserError as error:
                outcome[0] = ("error", str(error))
        dist.broadcast_object_list(outcome, src=0)
        kind, value = outcome[0]  # type: ignore[misc]
        if kind == "error":
            raise UserError(value)
        return value  # type: ignore[return-value]

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (e.g. the best weights, read by rank 0)."""
        if self.size > 1:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


SINGLE_PROCESS = World()


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher that sets its variables) started several processes."""
    return all(name in os.environ for name in LAUNCH_VARIABLES) and int(os.environ["WORLD_SIZE"]) > 1


def _environment_world() -> World:
    try:
        return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    except ValueError as error:
        raise UserError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers, as torchrun sets them ({error})") from error


@contextmanager
def joined_world() -> Iterator[World]:
    """The process group of a torchrun launch for the duration of the block, else one process.

    The backend is gloo, with NCCL for CUDA tensors where CUDA is available ("cpu:gloo,cuda:nccl"),
    so the same group serves a CPU run and a GPU run and is chosen before the run's device is known
    (a resumed run reads its device from its config, through the group). A process group that the
    caller already made is used as it is and left open.
    """
    if not launched_by_torchrun():
        yield SINGLE_PROCESS
        return
    world = _environment_world()
    if dist.is_initialized():
        yield world
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    logger.info("rank %d of %d joined (%s)", world.rank, world.size, dist.get_backend())
    try:
        yield world
        world.barrier()  # rank 0 may still be writing pictures: leave together
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device this rank trains on: its own GPU, cuda:LOCAL_RANK, for CUDA; the CPU as it is."""
    if world.size == 1:
        return device
    if device.type == "cuda":
        available = torch.cuda.device_count()
        if world.local_rank >= available:
            raise UserError(
                f"process {world.local_rank} on this machine needs its own GPU, but the machine has {available}; "
                f"pass torchrun --nproc-per-node {available} (or fewer)"
            )
        return torch.device("cuda", world.local_rank)
    if device.type != "cpu":
        raise UserError(f"distributed training runs on CUDA GPUs or CPUs, not {device.type}; pass --device cpu")
    return device
