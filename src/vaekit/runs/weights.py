"""Weights as safetensors: written atomically, and read without ever unpickling anything.

Nothing read here is trusted: a file that is not safetensors (a pickle, say) is refused without being
unpickled; one whose tensors do not match the checksum written with them, or hold NaN or infinity, is
refused as damaged (vaekit.runs.integrity), with which of the run's other weight files are still good; and
names, shapes and dtypes are checked against the model before use.
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
from vaekit.runs.directory import CHECKPOINT_FILE, WEIGHTS_FILE
from vaekit.runs.files import atomic_write_bytes
from vaekit.runs.integrity import CHECKSUM_KEY, checksum, damage


class HasState(Protocol):
    """A module, or anything else that keeps named tensors (a weight average)."""

    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> object: ...


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file of `tensors` (copied to the CPU, contiguous) with the header `metadata` and the
    checksum of both."""
    tensors, metadata = _contiguous(tensors), dict(metadata or {})
    return save_safetensors_bytes(tensors, {**metadata, CHECKSUM_KEY: checksum(tensors, metadata)})


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, safetensors_bytes(model.state_dict(), metadata))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file, verified; anything else (a pickle, say) is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing; the run directory is incomplete (was training interrupted before epoch 1?)")
    blob = path.read_bytes()
    try:
        tensors, metadata = _parse(blob)
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError, AttributeError) as error:
        what = "a pickle, which could run code if loaded" if _looks_pickled(blob) else " ".join(str(error).split())
        raise UserError(
            f"{path}: not a safetensors file ({what}); vaekit loads weights only from safetensors and never "
            "unpickles, so re-create the run with `vaekit train`"
        ) from error
    problem = damage(tensors, metadata)
    if problem is not None:
        raise UserError(f"{path}: damaged ({problem}); vaekit will not use it. {_what_is_left(path)}")
    return tensors, metadata


def _parse(blob: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = load_safetensors_bytes(blob)
    header_size = int.from_bytes(blob[:8], "little")
    return tensors, json.loads(blob[8 : 8 + header_size]).get("__metadata__", {}) or {}


def _what_is_left(damaged: Path) -> str:
    """Which of the run's other weight files is still good, and what it allows."""
    if damaged.name == WEIGHTS_FILE:
        state = _state_of(damaged.with_name(CHECKPOINT_FILE))
        left = f"{CHECKPOINT_FILE} is {state}" if state else f"there is no intact {CHECKPOINT_FILE} either"
        return f"{left}; restore {WEIGHTS_FILE} from a copy, or train the run again with --overwrite"
    if damaged.name == CHECKPOINT_FILE:
        state = _state_of(damaged.with_name(WEIGHTS_FILE))
        left = (f"{WEIGHTS_FILE} is {state}, so sample, evaluate and encode still work" if state
                else f"there is no intact {WEIGHTS_FILE} either")
        return f"The run cannot resume from it; {left}. To train on, start the run again with --overwrite"
    return "Write it again"


def _state_of(path: Path) -> str | None:
    """'intact (the best weights)', or a checkpoint's 'intact (3 epochs trained)'; None if missing or damaged."""
    from vaekit.runs.checkpoint import trained_epochs

    try:
        tensors, metadata = _parse(path.read_bytes())
    except (OSError, SafetensorError, ValueError, UnicodeDecodeError, OverflowError, AttributeError):
        return None
    if damage(tensors, metadata) is not None:
        return None
    if path.name == WEIGHTS_FILE:
        return "intact (the best weights)"
    try:
        return f"intact ({trained_epochs(metadata, path)} epochs trained)"
    except UserError:
        return None


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
    if any(value.is_meta for value in expected.values()):
        module.load_state_dict(tensors, assign=True)  # a module built on the meta device takes the file's tensors
    else:
        module.load_state_dict(tensors)


def load_weights(module: nn.Module, path: Path) -> None:
    tensors, _ = read_safetensors(path)
    check_and_load(module, tensors, Path(path))


