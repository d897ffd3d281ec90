"""Figures of a trained model on a dataset, in nats per example."""

from __future__ import annotations

import numpy as np
import torch

from vaekit.data.codec import Codec
from vaekit.model import VAE
from vaekit.objectives import elbo

EVAL_BATCH = 1000  # large batches amortize per-call overhead; memory stays small for MLP-sized models


@torch.no_grad()
def dataset_elbo(
    model: VAE,
    stored: np.ndarray | torch.Tensor,
    codec: Codec,
    mc_samples: int = 1,
    seed: int = 0,
    batch_size: int = EVAL_BATCH,
) -> dict[str, float]:
    """Mean ELBO, reconstruction term and KL over a split (stored form), deterministic given `seed`."""
    device = next(model.parameters()).device
    stored = torch.as_tensor(stored)
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    for start in range(0, len(stored), batch_size):
        x = codec.to_model(stored[start : start + batch_size].to(device))
        terms = elbo(model, x, mc_samples, generator)
        totals += torch.stack([terms.bound.sum(), terms.reconstruction.sum(), terms.kl.sum()]).double()
    model.train(was_training)
    elbo_value, reconstruction, kl = (totals / max(len(stored), 1)).tolist()
    return {"elbo": elbo_value, "reconstruction": reconstruction, "kl": kl}
