"""The eager step, replayed as one captured CUDA graph for every full batch (vaekit.training.cuda_graph).

The graph's body is the eager step's forward and backward with β and the step size as tensors, and
the finite check turned into a flag that makes Adam skip its update (the host reads it after the
replay). Partial batches, and every batch after a capture fails, take the eager step itself. A conditional
model's labels sit in a buffer of the graph's beside x, copied in before each replay.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from vaekit.data.batch import Batch
from vaekit.training.cuda_graph import CapturedStep, CudaGraph, GraphFactory, graphs_available
from vaekit.training.guard import NonFinite
from vaekit.training.step import EagerStep, StepAt

logger = logging.getLogger(__name__)


def graphs_suit(model: nn.Module, device: torch.device) -> bool:
    """Whether a step of `model` on `device` can be captured (a CUDA GPU, a torch that registers
    generators, and no convolutions), saying why not where the user asked for graphs."""
    if device.type != "cuda":
        return False
    if not graphs_available():
        logger.info("this torch cannot capture a step that draws from its own generator; no CUDA graphs")
        return False
    if any(isinstance(m, nn.RNNBase) for m in model.modules()):
        logger.info("recurrent networks train without CUDA graphs: their batches change length")
        return False
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        # Their capture failed on an H100 (torch 2.11), for a reason not yet found: they launch eagerly.
        logger.info("convolutional networks train without CUDA graphs")
        return False
    return True


class GraphedStep:
    def __init__(self, eager: EagerStep, batch_size: int, new_graph: GraphFactory = CudaGraph):
        """Replay `eager`'s step for batches of `batch_size` examples; `new_graph` makes the graph
        (a stand-in that runs the step again lets the CPU tests take this path)."""
        self.eager, self.batch_size, self.new_graph = eager, batch_size, new_graph
        self.captured: CapturedStep | None = None
        self.failed = False  # a capture failed: every step is eager from then on
        self.gradients: list[torch.Tensor] = []  # the parameters whose gradient sums the graph checks
        self.labels: torch.Tensor | None = None  # the graph's own copy of a conditional batch's labels

    def __call__(self, batch: Batch, at: StepAt) -> torch.Tensor:
        if self.failed or len(batch) != self.batch_size:
            return self.eager(batch, at)
        captured = self.captured or self._capture(batch)
        if captured is None:
            return self.eager(batch, at)
        parts = self.eager.parts
        if self.labels is not None:
            self.labels.copy_(batch.labels)
        found_inf, checks, sums = captured.replay(batch.x, at.beta, at.learning_rate)
        if found_inf.item():  # the graph skipped Adam's update: nothing reached the weights
            raise NonFinite(parts.guard.culprit(checks, self.gradients))
        parts.average.update(at.number)  # Adam's update was the graph's; its gradients stay with it
        return sums

    def _capture(self, batch: Batch) -> CapturedStep | None:
        """Capture the step for batches like `batch`; None (and eager steps from now on) where it fails."""
        parts = self.eager.parts
        parts.optimizer.init_state()  # inside the graph, Adam's state must already exist
        self.labels = None if batch.labels is None else batch.labels.detach().clone()
        state = [*parts.guard.parameters, *(t for s in parts.optimizer.state.values() for t in s.values())]
        try:
            self.captured = CapturedStep(self._body, batch.x, parts.randomness.noise, state,
                                         lambda: parts.optimizer.zero_grad(set_to_none=True), self.new_graph)
        except RuntimeError as error:  # weights and Adam's state are as they were: train eagerly
            logger.warning("CUDA graph capture failed (%s); training goes on without CUDA graphs "
                           "(--no-cuda-graphs avoids the attempt)", str(error).splitlines()[0])
            self.failed = True
            parts.randomness.renew_noise()
            return None
        return self.captured

    def _body(
        self, x: torch.Tensor, beta: torch.Tensor, learning_rate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step as the graph holds it, returning (found_inf, the checked values, the sums for the record)."""
        parts = self.eager.parts
        loss, terms = self.eager.forward_backward(Batch(x, self.labels), beta, autocast_cache=False)
        self.gradients, checks = parts.guard.values(loss)
        found_inf = (~torch.isfinite(checks).all()).to(torch.float32)
        parts.optimizer.step(lr=learning_rate, found_inf=found_inf)
        return found_inf, checks, terms.sums()
