"""A training step captured once as a CUDA graph and replayed for every full batch.

On a GPU, a step of a small network is bound by the host: the reference network's step launches
about 95 kernels that keep an H100 busy for a fraction of the time the host takes to issue them
(docs/performance.md, On a GPU). A CUDA graph records the kernels once; each later step is one launch.

What changes from step to step lives in tensors the graph reads: the batch, copied into a fixed
buffer, and the KL weight β and the step size. ε and dynamic binarization come from the run's noise
generator, registered with the graph, so each replay draws what the next eager step would have drawn.

A capture must not be the first use of the step's kernels (cuBLAS and autograd set themselves up on
first use, which a capture does not allow), so warm-up steps run first, on a side stream. They change
the weights, Adam's state and the generator; all of them are put back before the capture, so a run
with graphs takes exactly the steps that a run without them takes.

`CapturedStep` holds all of that; the graph itself is a `Graph`, `CudaGraph` on a GPU. A stand-in that
replays by running the step again lets the CPU tests exercise `CapturedStep` as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch

# (x, β, step size) -> the step's outputs; it runs under autograd and must leave no gradients behind
# that the next call would add to (the caller's `clear_gradients` runs between warm-up steps).
StepBody = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
WARMUP_STEPS = 2


def graphs_available() -> bool:
    """Whether this torch can capture steps that draw from a generator of their own."""
    return torch.cuda.is_available() and hasattr(torch.cuda.CUDAGraph, "register_generator_state")


class Graph(Protocol):
    """What `CapturedStep` needs of a graph: a place to warm up, a capture, and a replay."""

    def warming_up(self) -> contextlib.AbstractContextManager: ...
    def capture(self, work: Callable[[], tuple[torch.Tensor, ...]]) -> None: ...
    def replay(self) -> tuple[torch.Tensor, ...]: ...


class CudaGraph:
    """`torch.cuda.CUDAGraph` with the run's generator registered, warmed up on a side stream."""

    def __init__(self, device: torch.device, generator: torch.Generator):
        self.device, self.generator = device, generator
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: tuple[torch.Tensor, ...] = ()

    @contextmanager
    def warming_up(self) -> Iterator[None]:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            yield
        torch.cuda.current_stream(self.device).wait_stream(side)

    def capture(self, work: Callable[[], tuple[torch.Tensor, ...]]) -> None:
        """Record `work` (after the warm-up): its kernels, and its draws from the registered generator."""
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(self.generator)
        with torch.cuda.graph(self.graph):
            self.outputs = work()

    def replay(self) -> tuple[torch.Tensor, ...]:
        """The captured work again; returns its outputs, overwritten by the next replay."""
        if self.graph is None:
            raise RuntimeError("CudaGraph.replay before capture")
        self.graph.replay()
        return self.outputs


GraphFactory = Callable[[torch.device, torch.Generator], Graph]


class CapturedStep:
    def __init__(
        self,
        body: StepBody,
        example: torch.Tensor,
        generator: torch.Generator,
        state: Sequence[torch.Tensor],
        clear_gradients: Callable[[], None],
        new_graph: GraphFactory = CudaGraph,
    ):
        """Capture `body` for batches shaped like `example`. `state` is every tensor the body changes
        in place (weights, optimizer state): the warm-up's changes to it and to `generator` are undone."""
        device = example.device
        self.x = example.detach().clone()
        self.beta = torch.zeros((), device=device)
        # Adam's fused kernel computes with a float step size on a GPU (a double on a CPU): the tensor holds
        # what the kernel would have made of the number.
        rate_type = torch.float32 if device.type == "cuda" else torch.float64
        self.learning_rate = torch.zeros((), device=device, dtype=rate_type)
        self.clear_gradients = clear_gradients
        saved, saved_generator = [t.detach().clone() for t in state], generator.get_state()
        self.graph = new_graph(device, generator)
        try:
            with self.graph.warming_up():
                for _ in range(WARMUP_STEPS):
                    body(self.x, self.beta, self.learning_rate)
                    clear_gradients()
        finally:
            with torch.no_grad():
                for tensor, value in zip(state, saved):
                    tensor.copy_(value)
            generator.set_state(saved_generator)
            clear_gradients()
        try:
            self.graph.capture(lambda: body(self.x, self.beta, self.learning_rate))
        finally:
            # The gradients' memory stays with the graph, which writes them at every replay.
            clear_gradients()
            generator.set_state(saved_generator)

    def replay(self, x: torch.Tensor, beta: float, learning_rate: float) -> tuple[torch.Tensor, ...]:
        """One step on the batch x; returns the body's outputs, overwritten by the next replay."""
        self.x.copy_(x)
        self.beta.fill_(beta)
        self.learning_rate.fill_(learning_rate)
        outputs = self.graph.replay()
        # No Python tensor holds a real graph's gradients, so this finds none to free; a graph that stands
        # in by running the body again leaves them, and the next run would add to them.
        self.clear_gradients()
        return outputs
