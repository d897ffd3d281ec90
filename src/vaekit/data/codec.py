"""Codecs: the invertible map between a source's own units and the values the model sees.

A codec is fitted on the training split only and saved in the run's config.json, so `encode`,
`reconstruct` and `sample` read and write data in the user's original units.

torch is imported where a codec converts, not with the module: reading a run's settings needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch


class Codec(Protocol):
    def to_model(self, stored: torch.Tensor) -> torch.Tensor: ...
    def from_model(self, values: torch.Tensor) -> torch.Tensor: ...
    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PixelCodec:
    """uint8 pixels 0..255 <-> floats in [0, 1]; kept as uint8 in memory (4x smaller) and scaled per batch."""

    def to_model(self, stored: torch.Tensor) -> torch.Tensor:
        import torch

        return stored.to(torch.float32).div_(255.0)

    def from_model(self, values: torch.Tensor) -> torch.Tensor:
        import torch

        return values.clamp(0, 1).mul(255.0).round().to(torch.uint8)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "pixels"}


@dataclass(frozen=True)
class IdentityCodec:
    """Float data the model takes as it is (e.g. values already in [0, 1])."""

    def to_model(self, stored: torch.Tensor) -> torch.Tensor:
        import torch

        return stored.to(torch.float32)

    def from_model(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def to_dict(self) -> dict[str, Any]:
        return {"type": "identity"}


@dataclass(frozen=True)
class StandardizeCodec:
    """Per-dimension standardization (x - mean) / std, fitted on the training split."""

    mean: np.ndarray  # (*event_shape)
    std: np.ndarray  # (*event_shape), never 0

    @classmethod
    def fit(cls, train: np.ndarray) -> StandardizeCodec:
        mean = train.mean(axis=0, dtype=np.float64)
        std = train.std(axis=0, dtype=np.float64)
        std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)  # a constant column stays as it is
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def to_model(self, stored: torch.Tensor) -> torch.Tensor:
        import torch

        mean = torch.as_tensor(self.mean, device=stored.device)
        std = torch.as_tensor(self.std, device=stored.device)
        return (stored.to(torch.float32) - mean) / std

    def from_model(self, values: torch.Tensor) -> torch.Tensor:
        import torch

        mean = torch.as_tensor(self.mean, device=values.device)
        std = torch.as_tensor(self.std, device=values.device)
        return values * std + mean

    def to_dict(self) -> dict[str, Any]:
        return {"type": "standardize", "mean": self.mean.tolist(), "std": self.std.tolist()}


def codec_from_dict(raw: dict[str, Any], event_shape: tuple[int, ...] | None = None) -> Codec:
    """The codec that `to_dict` wrote. Anything else (a damaged config.json) is a ValueError saying what is
    wrong: no or an unknown type, or a standardization whose mean and std are not finite numbers of
    `event_shape` (when given), std above 0."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "pixels":
        return PixelCodec()
    if kind == "identity":
        return IdentityCodec()
    if kind == "tokens":  # a text run's tokenizer (vaekit.data.tokens)
        from vaekit.data.tokens import TokenCodec

        return TokenCodec.from_dict(raw, event_shape)
    if kind == "standardize":
        mean, std = (_values(raw, key, event_shape) for key in ("mean", "std"))
        if not (std > 0).all():
            raise ValueError("the codec's std holds values of 0 or below")
        return StandardizeCodec(mean, std)
    raise ValueError(f"unknown codec type {kind!r}" if isinstance(kind, str) else "the codec has no type")


def _values(raw: dict[str, Any], key: str, event_shape: tuple[int, ...] | None) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):
            values = np.asarray(raw[key], np.float32)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"the codec's {key} is missing or not numbers") from error
    if event_shape is not None and values.shape != tuple(event_shape):
        raise ValueError(f"the codec's {key} is {values.shape}, not the data's shape {tuple(event_shape)}")
    if not np.isfinite(values).all():
        raise ValueError(f"the codec's {key} holds NaN or infinite values")
    return values
