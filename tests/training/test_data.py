"""training/data.py: the epoch's batches are the rows of its seeded order, and the order is the seed's."""

from __future__ import annotations

import pytest
import torch

from vaekit.config import DataConfig
from vaekit.data.loading import load_data
from vaekit.errors import UserError
from vaekit.runtime.world import World
from vaekit.training.data import TrainingData


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig())


def test_batches_gather_the_rows_of_the_epoch_order(digits):
    data = TrainingData(digits.train.x, digits.codec, 32, torch.device("cpu"), World())
    order = data.order(0, seed=3)
    for step, (examples, batch) in enumerate(data.batches(order, 0)):
        expected = digits.codec.to_model(torch.from_numpy(digits.train.x)[order[step * 32 : (step + 1) * 32]])
        assert torch.equal(batch.x, expected)
        assert examples == len(batch)
    assert step + 1 == data.steps_per_epoch


def test_the_order_depends_on_the_seed_and_epoch_alone(digits):
    data = TrainingData(digits.train.x, digits.codec, 32, torch.device("cpu"), World())
    assert torch.equal(data.order(2, seed=5), data.order(2, seed=5))
    assert not torch.equal(data.order(2, seed=5), data.order(3, seed=5))
    assert not torch.equal(data.order(2, seed=5), data.order(2, seed=6))


def test_a_rank_takes_its_shard_of_every_global_batch(digits):
    whole = TrainingData(digits.train.x, digits.codec, 32, torch.device("cpu"), World())
    shards = [TrainingData(digits.train.x, digits.codec, 32, torch.device("cpu"), World(rank, 2)) for rank in (0, 1)]
    order = whole.order(0, seed=0)
    for (count, batch), *parts in zip(whole.batches(order, 1), *(s.batches(order, 1) for s in shards)):
        assert all(examples == count for examples, _ in parts)
        assert torch.equal(torch.cat([part.x for _, part in parts]), batch.x)


def test_fewer_examples_than_a_batch_is_a_clear_error(digits):
    with pytest.raises(UserError, match="fewer than one batch of 5000; pass a smaller --batch-size"):
        TrainingData(digits.train.x, digits.codec, 5000, torch.device("cpu"), World(), description="digits")
