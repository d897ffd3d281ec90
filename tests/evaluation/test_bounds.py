"""evaluation/bounds.py: the one bound over a dataset, as validation and results.json report it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.data.codec import PixelCodec
from vaekit.evaluation.bounds import dataset_bound
from vaekit.model.objectives import Elbo, Iwae
from vaekit.model.vae import VAE


@pytest.fixture(scope="module")
def model() -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), (1, 8, 8), "bernoulli")


@pytest.fixture(scope="module")
def stored() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (70, 1, 8, 8), dtype=np.uint8)


@pytest.mark.parametrize("objective", [Elbo(), Elbo(3), Iwae(5)], ids=["elbo", "elbo-3", "iwae-5"])
def test_the_bound_is_the_mean_of_its_batches_with_draws_from_one_seeded_generator(model, stored, objective):
    generator = torch.Generator().manual_seed(4)
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, 70, 30):
        x = PixelCodec().to_model(torch.from_numpy(stored[start : start + 30]))
        sums += objective.terms(model, Batch(x), generator).sums().double()
    expected = objective.figures(sums / 70)
    assert dataset_bound(model, stored, PixelCodec(), objective, seed=4, batch_size=30) == expected


def test_an_iwae_run_reports_its_bound_beside_the_elbo_of_the_same_samples(model, stored):
    figures = dataset_bound(model, stored, PixelCodec(), Iwae(5), seed=0)
    assert set(figures) == {"elbo", "reconstruction", "kl", "iwae"}
    assert figures["elbo"] == pytest.approx(figures["reconstruction"] - figures["kl"])
    assert figures["iwae"] > figures["elbo"]


def test_the_bound_leaves_the_model_in_the_mode_it_found(model, stored):
    model.train()
    dataset_bound(model, stored, PixelCodec())
    assert model.training
