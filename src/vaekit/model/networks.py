"""Encoder and decoder networks. Sizes come from the data's event shape, never typed in.

Encoders map x (B, *event_shape) to the two heads (μ, log σ²), each (B, D).
Decoders map z (..., D) to one value per data dimension (..., *event_shape): Bernoulli logits or
Gaussian means; the likelihood turns those into p(x|z).

A conditional model (vaekit.model.vae, `classes`) gives both a condition c (B, C), a label one-hot: the
encoder reads it beside x's features (after the convolutions of a conv net), the decoder beside z.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaekit.config import ModelConfig
from vaekit.errors import UserError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus,
}


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if activation == "gated":
            # (W x + b) * sigmoid(V x + c): both halves come from one product of twice the width
            layers += [nn.Linear(fan_in, 2 * fan_out), nn.GLU(dim=-1)]
        else:
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class GaussianHeads(nn.Module):
    """The recognition model's two linear heads: μ(x) and log σ²(x)."""

    def __init__(self, features: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(features, latent_dim)
        self.log_variance = nn.Linear(features, latent_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loc(h), self.log_variance(h)


def _joined(features: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Features (..., F) with the condition (B, C) beside them (broadcast over leading sample dims)."""
    if condition is None:
        return features
    return torch.cat([features, condition.to(features.dtype).expand(*features.shape[:-1], -1)], dim=-1)


def _conditioned(body: nn.Sequential, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """An encoder's body (..., flatten, dense layers) with the condition joined to the flattened features
    before the dense layers; the same modules (and weight names) with or without one."""
    if condition is None:
        return body(x)
    return body[-1](_joined(body[:-1](x), condition))


class MLPEncoder(nn.Module):
    def __init__(self, event_shape: tuple[int, ...], config: ModelConfig, condition_dim: int = 0):
        super().__init__()
        sizes = [math.prod(event_shape) + condition_dim, *config.hidden_sizes]
        self.body = nn.Sequential(nn.Flatten(), _mlp(sizes, config.activation))
        self.heads = GaussianHeads(sizes[-1], config.latent_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(_conditioned(self.body, x, condition))


class MLPDecoder(nn.Module):
    def __init__(self, event_shape: tuple[int, ...], config: ModelConfig, condition_dim: int = 0):
        super().__init__()
        self.event_shape = tuple(event_shape)
        sizes = [config.latent_dim + condition_dim, *reversed(config.hidden_sizes)]
        self.body = _mlp(sizes, config.activation)
        self.out = nn.Linear(sizes[-1], math.prod(event_shape))

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.body(_joined(z, condition))).unflatten(-1, self.event_shape)

    @torch.no_grad()
    def set_output_bias(self, output: torch.Tensor) -> None:
        """Make `output` (*event_shape) what the decoder emits when its last hidden layer is silent."""
        self.out.bias.copy_(output.flatten())


def _conv_sizes(height: int, width: int, layers: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2, kernel-3, padding-1 convolution: ceil(size / 2)."""
    sizes = [(height, width)]
    for _ in range(layers):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def _image_shape(event_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(event_shape) != 3:
        raise UserError(
            f"architecture = 'conv' needs images (channels, height, width), but the data has shape {event_shape}; "
            "use architecture = 'mlp'"
        )
    return event_shape  # type: ignore[return-value]


class ConvEncoder(nn.Module):
    def __init__(self, event_shape: tuple[int, ...], config: ModelConfig, condition_dim: int = 0):
        super().__init__()
        channels, height, width = _image_shape(event_shape)
        widths = [channels, *config.conv_channels]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(fan_in, fan_out, 3, stride=2, padding=1), ACTIVATIONS[config.activation]()]
        h, w = _conv_sizes(height, width, len(config.conv_channels))[-1]
        sizes = [widths[-1] * h * w + condition_dim, *config.hidden_sizes]
        self.body = nn.Sequential(*layers, nn.Flatten(), _mlp(sizes, config.activation))
        self.heads = GaussianHeads(sizes[-1], config.latent_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(_conditioned(self.body, x, condition))


class ConvDecoder(nn.Module):
    def __init__(self, event_shape: tuple[int, ...], config: ModelConfig, condition_dim: int = 0):
        super().__init__()
        channels, height, width = _image_shape(event_shape)
        self.event_shape = tuple(event_shape)
        spatial = _conv_sizes(height, width, len(config.conv_channels))
        widths = list(reversed(config.conv_channels))
        self.start = (widths[0], *spatial[-1])
        sizes = [config.latent_dim + condition_dim, *reversed(config.hidden_sizes), math.prod(self.start)]
        self.dense = nn.Sequential(_mlp(sizes, config.activation), nn.Unflatten(-1, self.start))
        layers: list[nn.Module] = []
        out_widths = [*widths[1:], widths[-1]]
        for i, (fan_in, fan_out) in enumerate(zip(widths, out_widths)):
            (h_in, w_in), (h_out, w_out) = spatial[-1 - i], spatial[-2 - i]
            # Output padding restores odd sizes that the encoder's ceil-halving produced.
            padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layers += [
                nn.ConvTranspose2d(fan_in, fan_out, 3, stride=2, padding=1, output_padding=padding),
                ACTIVATIONS[config.activation](),
            ]
        layers.append(nn.Conv2d(out_widths[-1], channels, 3, padding=1))
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        leading, z = z.shape[:-1], _joined(z, condition)
        out = self.convs(self.dense(z.reshape(-1, z.shape[-1])))
        return out.reshape(*leading, *self.event_shape)

    @torch.no_grad()
    def set_output_bias(self, output: torch.Tensor) -> None:
        """`output` (*event_shape) averaged over each channel's pixels: a convolution's bias is per channel."""
        last = self.convs[-1]
        last.bias.copy_(output.reshape(last.out_channels, -1).mean(-1))


NETWORKS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (MLPEncoder, MLPDecoder),
    "conv": (ConvEncoder, ConvDecoder),
}


def build_networks(config: ModelConfig, event_shape: tuple[int, ...], condition_dim: int = 0
                   ) -> tuple[nn.Module, nn.Module]:
    """The networks of `config.architecture`; auto, not yet resolved for the data (vaekit.api does), is the MLP.
    `condition_dim` > 0 gives both a condition of that width beside x and z."""
    encoder_cls, decoder_cls = NETWORKS["mlp" if config.architecture == "auto" else config.architecture]
    return encoder_cls(event_shape, config, condition_dim), decoder_cls(event_shape, config, condition_dim)
