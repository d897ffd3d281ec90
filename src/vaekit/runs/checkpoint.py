"""Crash-safe, pickle-free files: weights and training state as safetensors, written atomically.

Every file is written to a temporary sibling (`.NAME.XXXX.tmp`), flushed to disk and renamed over
the old one, so a kill at any instant leaves either the old file or the new one, never a torn one;
a killed write leaves only its temporary, which the next resume removes. Nothing read here is
trusted: a file that is not safetensors (a pickle, say) is refused without being unpickled, and
names, shapes and dtypes are checked against the model before use.
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

from vaekit.training.averaging import WeightAverage
from vaekit.errors import UserError
from vaekit.training.optim import Adam

MODEL_PREFIX = "model."
AVERAGE_PREFIX = "average."
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
        what = "a pickle, which could run code if loaded" if _looks_pickled(blob) else str(error)
        raise UserError(
            f"{path}: not a safetensors file ({what}); vaekit loads weights only from safetensors and never "
            "unpickles, so re-create the run with `vaekit train`"
        ) from error
    return tensors, metadata


def _looks_pickled(blob: bytes) -> bool:
    """A pickle (protocol 2 and up start with PROTO) or torch.save's zip, which holds one."""
    return blob[:1] == b"\x80" or blob[:4] == b"PK\x03\x04"


def check_and_load(module: nn.Module | WeightAverage, tensors: dict[str, torch.Tensor], origin: Path) -> None:
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


def save_training_state(
    path: Path,
    model: nn.Module,
    optimizer: Adam | torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    state: dict[str, Any],
    average: WeightAverage | None = None,
) -> None:
    """Everything that shapes the future of a run, in one atomically written safetensors file.

    Tensors: the model's (`model.`), the weight average's (`average.`, when averaging is on), the
    optimizer's per-parameter state (`optimizer.INDEX.NAME`) and each generator's state
    (`generator.NAME`); `state` and the optimizer's scalars go in the header as JSON. The optimizer's
    settings (learning rate, betas) are not saved: they come from the config.
    """
    tensors = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    if average is not None:
        tensors.update({AVERAGE_PREFIX + k: v for k, v in average.state_dict().items()})
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer.state_dict()["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIMIZER_PREFIX}{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    for name, generator in generators.items():
        tensors[GENERATOR_PREFIX + name] = generator.get_state()
    header = {"state": state, "optimizer_scalars": scalars}
    atomic_write_bytes(path, save_safetensors_bytes(_contiguous(tensors), {STATE_KEY: json.dumps(header)}))


def load_training_state(
    path: Path, model: nn.Module, optimizer: Adam | torch.optim.Optimizer, average: WeightAverage | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model, optimizer and weight average from `save_training_state`; returns the saved
    `state` and the generator states by name, for the caller to restore (it knows which devices they
    belong to). A checkpoint without averages (written with averaging off) starts the average at the
    restored weights.

    Nothing in the file is trusted: names, shapes and dtypes are checked against `model` and
    `optimizer` before use, and anything amiss is a `UserError` naming the file.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    try:
        header = json.loads(metadata[STATE_KEY])
        state, scalars = header["state"], header["optimizer_scalars"]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: holds no vaekit training state ({error!r}); it is not a vaekit checkpoint") from error
    check_and_load(model, {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}, path)
    if average is not None:
        averages = {k[len(AVERAGE_PREFIX):]: v for k, v in tensors.items() if k.startswith(AVERAGE_PREFIX)}
        if averages:
            check_and_load(average, averages, path)
        else:
            average.reset()
    _load_optimizer_state(optimizer, tensors, scalars, path)
    generators = {k[len(GENERATOR_PREFIX):]: v for k, v in tensors.items() if k.startswith(GENERATOR_PREFIX)}
    return state, generators


def _load_optimizer_state(
    optimizer: Adam | torch.optim.Optimizer, tensors: dict[str, torch.Tensor], scalars: dict[str, Any], path: Path
) -> None:
    """Per-parameter state (Adam's moments and step) into `optimizer`, checked against its parameters."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    per_parameter: dict[int, dict[str, Any]] = {}
    try:
        for key, value in tensors.items():
            if key.startswith(OPTIMIZER_PREFIX):
                index, name = key[len(OPTIMIZER_PREFIX):].split(".", 1)
                per_parameter.setdefault(int(index), {})[name] = value
        for index, values in scalars.items():
            per_parameter.setdefault(int(index), {}).update(dict(values))
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: damaged optimizer state ({error}); it is not a vaekit checkpoint") from error
    for index, values in per_parameter.items():
        if not 0 <= index < len(parameters):
            raise UserError(f"{path}: optimizer state for parameter {index}, but the model has {len(parameters)}")
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and (
                value.shape != parameters[index].shape or not value.is_floating_point()
            ):
                raise UserError(
                    f"{path}: optimizer state {index}.{name} is {tuple(value.shape)} {value.dtype} but its parameter "
                    f"is {tuple(parameters[index].shape)}; the checkpoint belongs to another model"
                )
    groups = optimizer.state_dict()["param_groups"]  # the settings of now (the config), not the file's
    try:
        optimizer.load_state_dict({"state": per_parameter, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError, TypeError) as error:
        raise UserError(f"{path}: optimizer state does not fit ({error}); the checkpoint belongs to another model") from error


def remove_stale_temporaries(directory: Path, names: tuple[str, ...]) -> None:
    """Delete the temporaries `atomic_write_bytes` leaves behind when killed mid-write."""
    for name in names:
        for temporary in Path(directory).glob(f".{name}.*.tmp"):
            temporary.unlink(missing_ok=True)
