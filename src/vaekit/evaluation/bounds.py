"""The bound of a model over a whole split, as training validates with every epoch and reports at its end.

One function serves one process and many: each rank takes its `World.shard` of every batch, ε is drawn
for the whole batch from one seeded generator (so every rank draws the same), and the sums are
all-reduced, so every rank returns what one process alone computes. A streamed image folder is decoded
batch by batch (vaekit.data.streaming).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vaekit.data.batch import Batch
from vaekit.data.codec import Codec
from vaekit.data.streaming import stored_batches
from vaekit.model.objectives import Elbo, Objective
from vaekit.model.vae import VAE
from vaekit.runtime.world import SINGLE_PROCESS, World

EVAL_BATCH = 1000  # large batches amortize per-call overhead; memory stays small for MLP-sized models


def shards(
    stored: Any, world: World, workers: int = 0, batch_size: int = EVAL_BATCH, pin_memory: bool = False
) -> Iterator[tuple[int, torch.Tensor]]:
    """Each batch's size and this rank's shard of it (all of it for one process), in stored form on the CPU
    (in pinned memory where `pin_memory`, for a quick copy to a GPU)."""
    counts = [min(batch_size, len(stored) - start) for start in range(0, len(stored), batch_size)]
    indices = (np.arange(start, start + count)[world.shard(count)]
               for start, count in zip(range(0, len(stored), batch_size), counts))
    return zip(counts, stored_batches(stored, indices, workers, pin_memory=pin_memory))


@torch.no_grad()
def dataset_bound(
    model: VAE,
    stored: Any,
    codec: Codec,
    objective: Objective = Elbo(),
    seed: int = 0,
    world: World = SINGLE_PROCESS,
    workers: int = 0,
    batch_size: int = EVAL_BATCH,
    labels: np.ndarray | None = None,
) -> dict[str, float]:
    """The mean bound, reconstruction term and KL of `objective` over the examples `stored` (stored form: an
    array, or a streamed folder), deterministic given `seed`: `objective.figures` of the means. A conditional
    model takes the examples' `labels`."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    examples = 0
    was_training = model.training
    model.eval()
    starts = range(0, len(stored), batch_size)
    for start, (count, shard) in zip(starts, shards(stored, world, workers, batch_size, device.type == "cuda")):
        eps = torch.randn((objective.samples, count, model.latent_dim), generator=generator, device=device)
        examples += count
        if not len(shard):  # a last batch smaller than the ranks may leave this one nothing
            continue
        y = None if labels is None else torch.as_tensor(labels[start : start + count][world.shard(count)]).to(device)
        batch = Batch(codec.to_model(shard.to(device)), y)
        totals += objective.terms(model, batch, noise=eps[:, world.shard(count)]).sums().double()
    model.train(was_training)
    return objective.figures(world.all_reduce_sum(totals) / max(examples, 1))
