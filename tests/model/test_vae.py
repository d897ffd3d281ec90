"""The recognition and generative models: shapes from the data, the reference network, the posterior."""

import pytest
import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.errors import UserError
from vaekit.model.vae import VAE


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_the_reference_784_400_20_network_is_expressible():
    model = VAE(ModelConfig(latent_dim=20, hidden_sizes=(400,)), (1, 28, 28), "bernoulli")
    assert linear_shapes(model.encoder) == [(784, 400), (400, 20), (400, 20)]  # body, μ head, log σ² head
    assert linear_shapes(model.decoder) == [(20, 400), (400, 784)]


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("event_shape", [(1, 8, 8), (1, 28, 28), (3, 5, 9), (3, 32, 32), (1, 1, 1)])
def test_networks_fit_any_image_size_and_channel_count(architecture, event_shape):
    config = ModelConfig(latent_dim=4, hidden_sizes=(32,), architecture=architecture, conv_channels=(8, 16))
    model = VAE(config, event_shape, "bernoulli")
    x = torch.rand(3, *event_shape)
    loc, log_variance = model.encode(Batch(x))
    assert loc.shape == log_variance.shape == (3, 4)
    assert model.decoder(torch.randn(2, 3, 4)).shape == (2, 3, *event_shape)  # (L, B, D) → (L, B, *event)
    assert model.observation_model(torch.randn(2, 3, 4)).log_prob(x).shape == (2, 3)


def test_gated_layers_multiply_a_linear_map_by_a_sigmoid_gate():
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(5,), activation="gated"), (7,), "gaussian")
    assert linear_shapes(model.decoder) == [(3, 10), (5, 7)]  # the hidden product is twice as wide
    first = model.decoder.body[0]
    z = torch.randn(4, 3)
    value, gate = (z @ first.weight.T + first.bias).split(5, dim=-1)
    assert torch.allclose(model.decoder.body(z), value * torch.sigmoid(gate), atol=1e-6)
    with pytest.raises(UserError, match="activation = gated is for dense layers"):
        ModelConfig(architecture="conv", activation="gated")


def test_conv_on_non_images_is_a_clear_error():
    with pytest.raises(UserError, match="architecture = 'conv' needs images"):
        VAE(ModelConfig(architecture="conv"), (10,), "gaussian")


def test_posterior_and_prior_are_distributions_over_the_latent_vector():
    model = VAE(ModelConfig(latent_dim=5, hidden_sizes=(16,)), (12,), "gaussian")
    x = torch.randn(7, 12)
    q = model.posterior(Batch(x))
    assert q.batch_shape == (7,) and q.event_shape == (5,)
    p = model.prior(x)
    assert p.batch_shape == () and p.event_shape == (5,)
    torch.testing.assert_close(p.mean, torch.zeros(5))


def test_sampling_is_reproducible_with_a_generator_and_in_model_units():
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(8,)), (1, 4, 4), "bernoulli")
    a = model.sample(6, torch.Generator().manual_seed(9))
    b = model.sample(6, torch.Generator().manual_seed(9))
    assert a.shape == (6, 1, 4, 4) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1  # pixel probabilities


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_the_output_can_start_at_the_data_mean(likelihood):
    """Where the last hidden layer is silent, the decoder's distribution has the data's mean."""
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), (1, 4, 5), likelihood)
    mean = torch.rand(1, 4, 5) * 0.9 + 0.05
    model.start_output_at(mean)
    silent = model.decoder.out(torch.zeros(16)).unflatten(-1, (1, 4, 5))
    torch.testing.assert_close(model.likelihood.mean(silent), mean)


def test_a_pixel_never_lit_starts_at_a_finite_logit():
    model = VAE(ModelConfig(latent_dim=3, hidden_sizes=(16,)), (1, 2, 2), "bernoulli")
    model.start_output_at(torch.tensor([[[0.0, 1.0], [0.5, 0.5]]]))
    bias = model.decoder.out.bias
    assert torch.isfinite(bias).all() and bias[0] < -6 and bias[1] > 6


def test_a_conv_decoder_starts_each_channel_at_its_mean_output():
    config = ModelConfig(latent_dim=3, hidden_sizes=(16,), architecture="conv", conv_channels=(4, 8))
    model = VAE(config, (3, 8, 8), "gaussian")
    mean = torch.arange(3.0).reshape(3, 1, 1).expand(3, 8, 8) + torch.rand(3, 8, 8) * 0.01
    model.start_output_at(mean)
    torch.testing.assert_close(model.decoder.convs[-1].bias, mean.mean((1, 2)))
