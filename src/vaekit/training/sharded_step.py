"""One process's step on its shard of a global batch, under torchrun (vaekit.runtime.world).

ε (and the uniforms of dynamic binarization) are drawn for the whole global batch from the generator
every rank holds in the same state, and each rank keeps its slice: the draws are a one-process run's.
Each rank's loss is its share of the batch's loss times the number of ranks, and DistributedDataParallel
averages the gradients in the backward pass, so the update is the one-process update.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vaekit.data.batch import Batch
from vaekit.errors import UserError
from vaekit.model.objectives import BoundTerms, Objective
from vaekit.runtime.world import World
from vaekit.training.step import StepAt, StepParts


class ShardObjective(nn.Module):
    """The VAE's loss on one rank's shard, as a module for DistributedDataParallel to wrap: DDP
    needs the forward pass to go through it to all-reduce the gradients in the backward pass.

    Its state is the VAE's, under `model.`; weights are always saved from the VAE itself.
    """

    def __init__(self, model: nn.Module, world: World, objective: Objective):
        super().__init__()
        self.model, self.world, self.objective = model, world, objective

    def forward(
        self, x: torch.Tensor, eps: torch.Tensor, global_batch: int, beta: float, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The scaled loss and the shard's sums of the bound, reconstruction and KL terms (3,); `labels` are
        the shard's, for a conditional model."""
        if len(x):
            terms = self.objective.terms(self.model, Batch(x, labels), noise=eps)
        else:  # a last batch smaller than the ranks leaves this one none of it; it still takes part
            terms = BoundTerms.of_nothing(self.model.latent_dim, x)
        loss = self.objective.shard_loss(terms, global_batch, self.world, beta)
        if not len(x):  # DDP all-reduces a gradient for every parameter: zeros, from here
            loss = loss + 0.0 * sum(p.sum() for p in self.parameters())
        return loss, terms.sums()


class ShardStep:
    def __init__(self, parts: StepParts, world: World, device: torch.device, batch_size: int):
        if batch_size < world.size:
            raise UserError(
                f"batch_size = {batch_size} is the global batch, shared by {world.size} processes; "
                f"pass a --batch-size of at least {world.size}"
            )
        self.parts, self.world = parts, world
        objective = ShardObjective(parts.model, world, parts.objective)
        self.data_parallel = DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )

    def __call__(self, batch: Batch, at: StepAt) -> torch.Tensor:
        """The step for this rank's shard batch (b, *event_shape) of a global batch of `at.global_batch`."""
        parts, x = self.parts, batch.x
        shard, noise = self.world.shard(at.global_batch), parts.randomness.noise
        if parts.binarize_dynamically:  # on the CPU, torch.bernoulli's draw bit for bit
            uniforms = torch.rand((at.global_batch, *x.shape[1:]), generator=noise, device=x.device, dtype=x.dtype)
            x = (uniforms[shard] < x).to(x.dtype)
        eps = torch.randn((parts.objective.samples, at.global_batch, parts.model.latent_dim), generator=noise,
                          device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)  # text: ids
        with parts.precision():
            loss, sums = self.data_parallel(x, eps[:, shard], at.global_batch, at.beta, batch.labels)
        loss.backward()
        parts.guard.check_on_every_rank(loss, self.world)
        parts.update(at)
        return sums
