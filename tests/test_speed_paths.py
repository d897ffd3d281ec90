"""The fast paths of training equal the reference ones they replace.

Each optimization of issue 7 keeps the numbers: the likelihoods' direct `log_prob` against the
`torch.distributions` objects (values and gradients), the bounds against the same bounds written with
those objects, bf16 autocast reaching only the networks, IDX files read straight into their arrays
against the whole-file reading they replaced, splits that drop the source's copy, row gathers, the
trainer's step that frees its gradients, and denormals flushed only while training.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import split_source
from vaekit.data.batch import Batch
from vaekit.data.idx import read_idx
from vaekit.data.source import IMAGE, RawData
from vaekit.errors import UserError
from vaekit.model.objectives import Elbo, Iwae
from vaekit.model.vae import VAE, reparameterize
from vaekit.runtime.cpu import _libc, _openmp_runtime, flush_denormals, freed_memory_kept, torch_threads


def small_vae(likelihood: str = "bernoulli", event_shape: tuple[int, ...] = (1, 4, 4)) -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), event_shape, likelihood)


# ----- likelihoods and bounds ----------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 2, 5), (6,)])
@pytest.mark.parametrize("binary", [False, True])
def test_bernoulli_log_prob_is_the_distributions_bit_for_bit(shape, binary):
    model = small_vae("bernoulli", shape)
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(1))
    x = torch.bernoulli(x) if binary else x
    z = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(2))  # (L, B, D)
    logits = model.decoder(z)
    assert torch.equal(model.likelihood.log_prob(logits, x), model.likelihood(logits).log_prob(x))
    assert torch.equal(model.log_likelihood(z, Batch(x)), model.observation_model(z).log_prob(x))


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 2, 5), (6,)])
@pytest.mark.parametrize("variance", ["per-dimension", "shared"])
def test_gaussian_log_prob_is_the_distributions_bit_for_bit(shape, variance):
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,), gaussian_variance=variance), shape, "gaussian")
    with torch.no_grad():
        model.likelihood.log_scale.normal_()
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    z = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(2))  # (L, B, D)
    mean = model.decoder(z)
    assert torch.equal(model.likelihood.log_prob(mean, x), model.likelihood(mean).log_prob(x))
    assert torch.equal(model.log_likelihood(z, Batch(x)), model.observation_model(z).log_prob(x))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_the_direct_log_prob_has_the_distributions_gradients(likelihood):
    shape = (1, 4, 4) if likelihood == "bernoulli" else (5,)
    model = small_vae(likelihood, shape)
    x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(1))
    z = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(2))
    gradients = []
    for log_prob in (lambda: model.log_likelihood(z, Batch(x)), lambda: model.observation_model(z).log_prob(x)):
        model.zero_grad()
        log_prob().sum().backward()
        gradients.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for fast, reference in zip(*gradients):
        torch.testing.assert_close(fast, reference, rtol=1e-6, atol=1e-6)


def test_elbo_and_iwae_equal_the_bounds_written_with_distribution_objects():
    model = small_vae()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    terms = Elbo(3).terms(model, Batch(x), torch.Generator().manual_seed(4))
    q = model.posterior(Batch(x))
    loc, log_variance = model.encode(Batch(x))
    z = reparameterize(loc, log_variance, 3, torch.Generator().manual_seed(4))
    reconstruction = model.observation_model(z).log_prob(x).mean(0)
    kl = torch.distributions.kl_divergence(q, model.prior(x))
    torch.testing.assert_close(terms.reconstruction, reconstruction, rtol=0, atol=0)
    torch.testing.assert_close(terms.kl, kl)
    torch.testing.assert_close(terms.bound, reconstruction - kl)

    bound = Iwae(4).terms(model, Batch(x), torch.Generator().manual_seed(5)).bound
    z = reparameterize(loc, log_variance, 4, torch.Generator().manual_seed(5))
    weights = model.observation_model(z).log_prob(x) + model.prior(x).log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(bound, torch.logsumexp(weights, 0) - np.log(4))


def test_bf16_autocast_reaches_only_the_networks():
    """On CUDA the trainer autocasts to bf16; the CPU's autocast checks the same casts here."""
    model = small_vae()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    reference = Elbo(1).terms(model, Batch(x), torch.Generator().manual_seed(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.decoder(torch.zeros(2, 3)).dtype == torch.bfloat16  # the products do run in bf16
        terms = Elbo(1).terms(model, Batch(x), torch.Generator().manual_seed(4))
    for name in ("bound", "reconstruction", "kl", "kl_per_dim"):
        value = getattr(terms, name)
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, getattr(reference, name), rtol=0.02, atol=0.1)


# ----- CPU settings ---------------------------------------------------------------------------------
def test_denormals_flush_to_zero_while_training_and_not_after():
    denormal = torch.tensor(2.0**-126) / 2
    assert denormal > 0
    with flush_denormals():
        assert torch.tensor(2.0**-126) / 2 == 0
        assert torch.tensor(1.5) * 2 == 3  # normal numbers are untouched
    assert torch.tensor(2.0**-126) / 2 == denormal


def test_denormals_flush_on_every_thread_of_a_parallel_op():
    """The OpenMP threads that run part of each parallel op flush too, though they existed before,
    and though scikit-learn's own OpenMP runtime is loaded beside torch's (the digits data loads it)."""
    import sklearn.linear_model  # noqa: F401 - loads scikit-learn's copy of libgomp

    _openmp_runtime.cache_clear()
    with torch_threads(2):
        smallest_normal = torch.full((1 << 20,), 2.0**-126)
        halves = smallest_normal / 2  # a parallel op: starts the OpenMP team before the flushing
        assert bool((halves > 0).all())
        with flush_denormals():
            assert bool((smallest_normal / 2 == 0).all()), "a thread of the team still computes denormals"
            assert bool((torch.full((1 << 20,), 1.5) * 2 == 3).all())
        assert bool((smallest_normal / 2 > 0).all()), "a thread of the team still flushes after the block"


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(_libc() is None or not Path("/proc/self/statm").exists(), reason="needs glibc and Linux")
def test_freed_memory_is_kept_while_training_and_handed_back_after():
    """Inside the block 64 MB freed stay resident for the next step; after it they go back to the system, and
    later allocations are glibc's own again (returned when freed)."""
    with freed_memory_kept():
        block = np.ones(64 << 18, dtype=np.float32)  # 64 MB, every page touched
        holding = resident_mb()
        del block
        assert resident_mb() > holding - 8, "freed memory was handed back inside the block"
    after = resident_mb()
    assert after < holding - 48, "the kept memory was not handed back after the block"
    block = np.ones(64 << 18, dtype=np.float32)
    del block
    assert resident_mb() - after < 16, "glibc's defaults were not restored"


def test_threads_apply_while_training_and_are_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_threads_and_precision_are_validated():
    with pytest.raises(UserError, match="threads = 0"):
        TrainConfig(threads=0)
    with pytest.raises(UserError, match="precision = 'fp16'"):
        TrainConfig(precision="fp16")
    assert RunConfig.from_dict({"train": {"threads": 2, "precision": "bf16"}}).train.threads == 2


# ----- data in memory ------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(f">HBB{array.ndim}I", 0, 8, array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def whole_file_reading(blob: bytes) -> np.ndarray:
    """What read_idx did before it streamed: the whole file decompressed, then viewed."""
    rank = blob[3]
    shape = struct.unpack(f">{rank}I", blob[4 : 4 + 4 * rank])
    return np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_files_stream_into_the_arrays_whole_file_reading_gave(tmp_path: Path, suffix):
    images = np.random.default_rng(0).integers(0, 256, (3000, 7, 9), dtype=np.uint8)  # > one read chunk
    blob = idx_bytes(images)
    path = tmp_path / f"images-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(blob) if suffix else blob)
    array = read_idx(path)
    assert array.flags.writeable and array.shape == images.shape
    assert np.array_equal(array, whole_file_reading(blob))


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("damage, message", [
    (lambda blob: blob[:-5], "truncated or corrupt"),
    (lambda blob: blob + b"\x07" * 5, "holds 17 data bytes but its header promises 12"),
    (lambda blob: struct.pack(">HBB3I", 0, 8, 3, 60000, 60000, 60000) + blob[16:], "truncated or corrupt"),
    (lambda blob: blob[:10], "IDX header is truncated"),
])
def test_damaged_idx_files_are_refused_before_any_large_allocation(tmp_path: Path, suffix, damage, message):
    blob = damage(idx_bytes(np.arange(12).reshape(2, 2, 3)))
    path = tmp_path / f"images-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(blob) if suffix else blob)
    with pytest.raises(UserError, match=message):
        read_idx(path)


def test_splits_keep_the_sources_metadata_but_not_a_second_copy_of_its_examples():
    x = np.random.default_rng(0).integers(0, 256, (40, 1, 3, 3), dtype=np.uint8)
    raw = RawData(x, np.arange(40), IMAGE, "forty", test_x=x[:5], test_y=np.arange(5), class_names=("a", "b"))
    splits = split_source(raw, DataConfig(validation_fraction=0.25))
    order = np.random.default_rng(0).permutation(40)  # split_seed 0
    assert np.array_equal(splits.validation.x, x[order[:10]]) and np.array_equal(splits.train.x, x[order[10:]])
    assert len(splits.raw.x) == 0 and splits.event_shape == (1, 3, 3)
    assert (splits.raw.description, splits.raw.class_names, splits.raw.kind) == ("forty", ("a", "b"), IMAGE)
    assert raw.x is x  # the caller's own data is left alone
