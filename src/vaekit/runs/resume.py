"""What a resumed run may change: training settings that continue a run rather than make another."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from vaekit.config import RunConfig, TrainConfig
from vaekit.errors import UserError
from vaekit.runs.directory import DataInfo

# Settings a resumed run may change; any other would make it a different run, not a continuation.
# cuda_graphs changes how a step is launched, not its numbers (equal bit for bit on a GPU: tests/test_cuda.py).
# tensorboard adds a second log of the same records; it changes nothing the run computes.
RESUMABLE_SETTINGS = ("epochs", "patience", "learning_rate", "device", "cuda_graphs", "checkpoint_every_steps",
                      "checkpoint_every_minutes", "tensorboard")
# Settings whose default (None) a run resolves when it begins, from its data, and config.json records: left unset,
# a resume keeps what the run resolved
RESOLVED_WHEN_BEGUN = ("batch_size", "warmup_epochs")


def resumed_config(saved: RunConfig, requested: RunConfig | None, out: Path) -> RunConfig:
    """The saved config with the training settings a resume may change taken from `requested`."""
    if requested is None:
        return saved
    unset = {name: getattr(saved.train, name) for name in RESOLVED_WHEN_BEGUN if getattr(requested.train, name) is None}
    requested = replace(requested, train=replace(requested.train, **unset))  # the run's resolved values: no change
    changed = [
        f"{f.name} = {getattr(saved.train, f.name)!r} (not {getattr(requested.train, f.name)!r})"
        for f in fields(TrainConfig)
        if f.name not in RESUMABLE_SETTINGS and getattr(saved.train, f.name) != getattr(requested.train, f.name)
    ]
    if changed:
        raise UserError(
            f"{out}: a resumed run continues exactly, so it keeps {', '.join(changed)}; only "
            f"{', '.join(RESUMABLE_SETTINGS)} may change. Start a new run with --out to change the others"
        )
    # How a folder is read (streamed or not, by how many workers) does not change the run.
    data = replace(saved.data, stream=requested.data.stream, workers=requested.data.workers)
    return replace(requested, data=data, model=saved.model)


def check_same_data(saved: DataInfo, now: DataInfo, out: Path) -> None:
    """A resumed run trains on the data it began with: the same shape and split sizes."""
    if (now.event_shape, now.counts) != (saved.event_shape, saved.counts):
        raise UserError(
            f"{out}: this run was made for data of shape {saved.event_shape} with {saved.counts} examples, "
            f"not {now.event_shape} with {now.counts} ({now.description}); resume with the run's own data"
        )
