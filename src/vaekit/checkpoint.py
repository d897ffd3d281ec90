"""Crash-safe, pickle-free files: weights and training state as safetensors, written atomically.

Every file is written to a temporary sibling, flushed to disk and renamed over the old one, so a
kill at any instant leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from vaekit.errors import UserError

MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."
GENERATOR_PREFIX = "generator."
STATE_KEY = "vaekit_state"  # JSON of everything that is not a tensor, in the safetensors header


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory handles
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, save_safetensors_bytes(_contiguous(model.state_dict()), metadata))


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
        raise UserError(
            f"{path}: not a safetensors file ({error}); vaekit loads weights only from safetensors and never "
            "unpickles, so re-create the run with `vaekit train`"
        ) from error
    return tensors, metadata


def check_and_load(module: nn.Module, tensors: dict[str, torch.Tensor], origin: Path) -> None:
    """Load `tensors` into `module` after checking names, shapes and dtypes against it."""
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


def save_training_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    state: dict[str, Any],
) -> None:
    """Everything that shapes the future of a run, in one atomically written safetensors file."""
    tensors = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIMIZER_PREFIX}{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    for name, generator in generators.items():
        tensors[GENERATOR_PREFIX + name] = generator.get_state()
    header = {
        "state": state,
        "optimizer_param_groups": optimizer_state["param_groups"],
        "optimizer_scalars": scalars,
    }
    atomic_write_bytes(path, save_safetensors_bytes(_contiguous(tensors), {STATE_KEY: json.dumps(header)}))


def load_training_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
) -> dict[str, Any]:
    """Restore model, optimizer and generators from `save_training_state`; returns the saved `state`."""
    tensors, metadata = read_safetensors(path)
    if STATE_KEY not in metadata:
        raise UserError(f"{path}: holds no training state; it is not a vaekit checkpoint")
    header = json.loads(metadata[STATE_KEY])
    check_and_load(model, {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}, path)
    optimizer_state: dict[str, Any] = {"state": {}, "param_groups": header["optimizer_param_groups"]}
    for key, value in tensors.items():
        if key.startswith(OPTIMIZER_PREFIX):
            index, name = key[len(OPTIMIZER_PREFIX):].split(".", 1)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
    for index, values in header["optimizer_scalars"].items():
        optimizer_state["state"].setdefault(int(index), {}).update(values)
    optimizer.load_state_dict(optimizer_state)
    for name, generator in generators.items():
        generator.set_state(tensors[GENERATOR_PREFIX + name])
    return header["state"]
