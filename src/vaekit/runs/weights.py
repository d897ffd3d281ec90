"""Weights as safetensors: written atomically, and read without ever unpickling anything.

Nothing read here is trusted: a file that is not safetensors (a pickle, say) is refused without being
unpickled, and names, shapes and dtypes are checked against the model before use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from vaekit.errors import UserError
from vaekit.runs.files import atomic_write_bytes


class HasState(Protocol):
    """A module, or anything else that keeps named tensors (a weight average)."""

    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> object: ...


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file of `tensors` (copied to the CPU, contiguous) with the header `metadata`."""
    return save_safetensors_bytes(_contiguous(tensors), metadata)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, safetensors_bytes(model.state_dict(), metadata))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; anything else (a pickle, say) is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing; the run directory is incomplete (was training interrupted before epoch 1?)")
    blob = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(blob)
        header_size = int.from_bytes(blob[:8], "little")
        metadata = json.loads(blob[8 : 8 + header_size]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as error:
        what = "a pickle, which could run code if loaded" if _looks_pickled(blob) else str(error)
        raise UserError(
            f"{path}: not a safetensors file ({what}); vaekit loads weights only from safetensors and never "
            "unpickles, so re-create the run with `vaekit train`"
        ) from error
    return tensors, metadata


def _looks_pickled(blob: bytes) -> bool:
    """A pickle (protocol 2 and up start with PROTO) or torch.save's zip, which holds one."""
    return blob[:1] == b"\x80" or blob[:4] == b"PK\x03\x04"


def check_and_load(module: HasState, tensors: dict[str, torch.Tensor], origin: Path) -> None:
    """Load `tensors` into `module` (or a weight average) after checking names, shapes and dtypes against it."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"{origin}: weights do not match the run's config (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "the file belongs to another model"
        )
    for name, value in expected.items():
        stored = tensors[name]
        if stored.shape != value.shape or stored.dtype != value.dtype:
            raise UserError(
                f"{origin}: {name} is {tuple(stored.shape)} {stored.dtype} but the config needs "
                f"{tuple(value.shape)} {value.dtype}; the file belongs to another model"
            )
    module.load_state_dict(tensors)


def load_weights(module: nn.Module, path: Path) -> None:
    tensors, _ = read_safetensors(path)
    check_and_load(module, tensors, Path(path))


