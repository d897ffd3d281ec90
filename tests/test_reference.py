"""The reference run of the issue: Fashion-MNIST, MLP 784-400-20, Bernoulli on grey levels, 10 epochs.

pytorch/examples' VAE reaches a test loss of 244.4 nats in this setting on this machine and
Pythae's 243.8; vaekit must reach at most 245 (measured: see docs/reproducing.md).
"""

import json
import os

import pytest

from helpers import needs_fashion_mnist, run_subprocess

REFERENCE_FLAGS = [
    "--data", "fashion-mnist", "--hidden-sizes", "400", "--latent-dim", "20", "--likelihood", "bernoulli",
    "--binarize", "none", "--learning-rate", "1e-3", "--batch-size", "128", "--epochs", "10", "--seed", "0",
    "--validation-fraction", "0",  # all 60,000 training images, as pytorch/examples trains
]


@pytest.mark.slow
@needs_fashion_mnist
def test_reference_run_reaches_test_loss_245(tmp_path):
    threads = str(os.cpu_count() or 1)  # a real training run: use the machine (one process, no other load)
    result = run_subprocess("train", *REFERENCE_FLAGS, "--out", tmp_path / "ref", "--quiet", "--json",
                            timeout=900, env={"OMP_NUM_THREADS": threads})
    assert result.code == 0, result.err
    results = json.loads(result.out)
    assert results["test_examples"] == 10_000
    assert -results["test_elbo"] <= 245.0, results
    assert results["test_elbo"] == pytest.approx(results["test_reconstruction"] - results["test_kl"])
