"""The training split where the steps take it from: on the device, in a seeded order, a batch at a time.

uint8 pixels stay uint8 on the device and are scaled per batch (4x less memory and bandwidth); a
folder too large for memory stays on disk and comes batch by batch (vaekit.data.streaming). The
order of epoch e is a permutation seeded by (seed, e), so a resumed run takes the same batches. Text is
bucketed: within each run of BUCKET_BATCHES batches of that permutation, sentences are sorted by length
and the batches shuffled, so a batch holds sentences of about one length and little padding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vaekit.data.batch import Batch
from vaekit.data.codec import Codec
from vaekit.data.streaming import is_streamed, stored_batches
from vaekit.data.tokens import PAD, TokenCodec
from vaekit.errors import UserError
from vaekit.runtime.world import World

MEAN_EXAMPLES = 512  # for the decoder's starting output: enough for a mean image, quick to decode
ORDER_SEED_STRIDE = 1_000_003  # a prime, so (seed, epoch) pairs give distinct permutation seeds
BUCKET_BATCHES = 50  # text: batches sorted by length together (torchtext's BucketIterator's idea)


class TrainingData:
    def __init__(self, stored: Any, codec: Codec, batch_size: int, device: torch.device, world: World,
                 workers: int = 0, description: str = "data", labels: np.ndarray | None = None):
        """`stored` is the training split in stored form (an array, or a streamed folder); `workers` the
        processes that decode a streamed folder; `labels` go with each batch (a conditional model's)."""
        self.codec, self.batch_size, self.device, self.world, self.workers = codec, batch_size, device, world, workers
        self.streamed = is_streamed(stored)
        self.stored = stored if self.streamed else torch.from_numpy(stored).to(device)
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long).to(device)
        # text: each sentence's tokens, which every epoch's buckets sort by
        self.lengths = (self.stored != PAD).sum(1).cpu() if isinstance(codec, TokenCodec) else None
        if len(self.stored) < batch_size:
            raise UserError(
                f"{description}: {len(self.stored)} training examples are fewer than one batch "
                f"of {batch_size}; pass a smaller --batch-size or more data"
            )

    def __len__(self) -> int:
        return len(self.stored)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.stored) / self.batch_size)

    def order(self, epoch: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed * ORDER_SEED_STRIDE + epoch)
        order = torch.randperm(len(self.stored), generator=generator)
        if self.lengths is not None:
            order = self._bucketed(order, generator)
        return order if self.streamed else order.to(self.device)  # streamed files are picked on the CPU

    def _bucketed(self, order: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`order` with each run of BUCKET_BATCHES batches sorted by sentence length, and its full batches
        shuffled (the last, smaller batch stays last, as the steps expect)."""
        lengths = self.lengths[order]
        span = self.batch_size * BUCKET_BATCHES
        sorted_runs = [order[start : start + span][torch.argsort(lengths[start : start + span], stable=True)]
                       for start in range(0, len(order), span)]
        order = torch.cat(sorted_runs)
        full = len(order) // self.batch_size
        batches = order[: full * self.batch_size].view(full, self.batch_size)
        shuffled = batches[torch.randperm(full, generator=generator)].reshape(-1)
        return torch.cat([shuffled, order[full * self.batch_size :]])

    def batches(self, order: torch.Tensor, first_step: int) -> Iterator[tuple[int, Batch]]:
        """From step `first_step` of an epoch on: each global batch's size, and this rank's shard of it
        (all of it for one process) on the device, in model units, with its labels where they are kept."""
        for examples, stored, index in self._stored_batches(order, first_step):
            labels = None if self.labels is None else self.labels.index_select(0, index.to(self.labels.device))
            yield examples, Batch(self.codec.to_model(stored), labels)

    def _stored_batches(self, order: torch.Tensor, first_step: int
                        ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Each batch's size, this rank's shard of it in stored form on the device, and the shard's indices."""
        batch, world = self.batch_size, self.world
        starts = range(first_step * batch, len(order), batch)
        shards = [order[start : start + batch][world.shard(min(batch, len(order) - start))] for start in starts]
        if not self.streamed:
            for start, index in zip(starts, shards):
                # index_select copies whole rows, several times faster than t[index] (docs/performance.md).
                yield min(batch, len(order) - start), self.stored.index_select(0, index), index
            return
        decoded = stored_batches(self.stored, iter(shards), self.workers, pin_memory=self.device.type == "cuda")
        for start, index, stored in zip(starts, shards, decoded):
            yield min(batch, len(order) - start), stored.to(self.device, non_blocking=True), index

    def mean(self) -> torch.Tensor:
        """The mean of the training data in model units: for token ids, the frequencies (V,) of the tokens (the
        mean of their one-hot vectors, <pad> aside); else as `examples_mean`."""
        if isinstance(self.codec, TokenCodec):
            tokens = self.stored[self.stored != PAD]
            counts = torch.bincount(tokens.cpu(), minlength=self.codec.vocab_size).to(torch.float64)
            return (counts / counts.sum()).to(self.device, torch.float32)
        return self.examples_mean()

    def examples_mean(self) -> torch.Tensor:
        """The mean of the first MEAN_EXAMPLES training examples (a random sample: the split is shuffled) in
        model units (*event_shape), a batch at a time; the same numbers whether the data is in memory or
        streamed from disk (where decoding all of it would cost an epoch)."""
        count, size = min(len(self.stored), MEAN_EXAMPLES), self.batch_size
        starts = range(0, count, size)
        if self.streamed:
            indices = (np.arange(start, min(start + size, count)) for start in starts)
            chunks = (stored.to(self.device) for stored in stored_batches(self.stored, indices, self.workers))
        else:
            chunks = (self.stored[start : min(start + size, count)] for start in starts)
        # Float64 sums on the CPU: MPS has no float64.
        total = sum(self.codec.to_model(stored).sum(0).to("cpu", torch.float64) for stored in chunks)
        return (total / count).to(self.device, torch.float32)
