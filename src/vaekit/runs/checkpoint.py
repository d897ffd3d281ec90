"""The training state of a run as one safetensors file, for an exact resume: no pickle, nothing trusted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from vaekit.errors import UserError
from vaekit.runs.directory import STATE_KEY
from vaekit.runs.files import atomic_write_bytes
from vaekit.runs.weights import HasState, check_and_load, read_safetensors, safetensors_bytes

MODEL_PREFIX = "model."
AVERAGE_PREFIX = "average."
OPTIMIZER_PREFIX = "optimizer."
GENERATOR_PREFIX = "generator."


class Optimizer(Protocol):
    """torch.optim's layout of an optimizer's state, which vaekit's Adam keeps too."""

    param_groups: list[dict[str, Any]]

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, saved: dict[str, Any]) -> None: ...


class Average(HasState, Protocol):
    def reset(self) -> None: ...


def save_training_state(
    path: Path,
    model: nn.Module,
    optimizer: Optimizer,
    generators: dict[str, torch.Generator],
    state: dict[str, Any],
    average: Average | None = None,
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
    atomic_write_bytes(path, safetensors_bytes(tensors, {STATE_KEY: json.dumps(header)}))


def trained_epochs(metadata: dict[str, str], path: Path) -> int:
    """The whole epochs a checkpoint has trained, from its header's metadata."""
    try:
        return int(json.loads(metadata[STATE_KEY])["state"]["progress"]["epoch"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path}: damaged training state ({error!r}); it was not written by this vaekit") from error


def load_training_state(
    path: Path, model: nn.Module, optimizer: Optimizer, average: Average | None = None
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
        if not isinstance(state, dict) or not isinstance(scalars, dict):
            raise TypeError("state and optimizer_scalars must be JSON objects")
    except (KeyError, TypeError, ValueError, RecursionError) as error:  # ValueError: JSON's, or a 5000-digit number
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
    optimizer: Optimizer, tensors: dict[str, torch.Tensor], scalars: dict[str, Any], path: Path
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
        raise UserError(
            f"{path}: optimizer state does not fit ({error}); the checkpoint belongs to another model"
        ) from error


