"""The Python API: train a run into a directory, and load it back as a `TrainedVAE`.

    import vaekit
    run = vaekit.train(vaekit.RunConfig(), "runs/digits")       # trains on the embedded digits
    images = run.sample(16)                                       # (16, 1, 8, 8) uint8
    loc, scale = run.encode(images)                               # (16, 20) each
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vaekit.config import DEFAULT_BATCH, ModelConfig, RunConfig, batch_size_for
from vaekit.data.arrays import from_array
from vaekit.data.loading import load_data
from vaekit.data.source import AUDIO, TEXT, RawData, Splits, resolve_likelihood, split_source
from vaekit.errors import UserError
from vaekit.reporting.report import write_report
from vaekit.reporting.run_pictures import write_pictures
from vaekit.runs.directory import DataInfo, build_model, prepare_output_dir, read_config, write_config
from vaekit.runs.files import CannotWrite
from vaekit.runs.lock import run_lock
from vaekit.runs.resume import check_same_data, resumed_config
from vaekit.runs.trained import TrainedVAE
from vaekit.runtime.device import resolve_device
from vaekit.runtime.world import World, joined_world, rank_device
from vaekit.training.loop import Hooks, Trainer
from vaekit.training.signals import stop_on_signals

__all__ = ["TrainedVAE", "train"]

logger = logging.getLogger(__name__)
AUDIO_CONV_CHANNELS = (16, 32, 32, 64)  # each layer halves a spectrogram: 129 x 100 -> 9 x 7 after four


def train(
    config: RunConfig | None,
    out: str | Path,
    *,
    data: np.ndarray | RawData | None = None,
    labels: np.ndarray | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
    hooks: Hooks = Hooks(),
) -> TrainedVAE | None:
    """Train a VAE into the run directory `out` and return it loaded.

    `data` (an array or `RawData`) trains on memory instead of `config.data.source`; an array is read
    by the rule a .npy file is (uint8 (N, C, H, W) or (N, H, W): images; anything else: values). With
    `resume=True` the run continues exactly from its last checkpoint: the saved config is used, and
    `config` may change only the training settings in `RESUMABLE_SETTINGS` (e.g. more epochs).
    Ctrl-C or SIGTERM during training writes a checkpoint and raises `TrainingInterrupted`.
    Launched by torchrun, every process calls this and they train one run together
    (vaekit.runtime.world): rank 0 writes it and returns it, the other ranks return None.
    `hooks` reach into training (vaekit.training.loop.Hooks), for tests.
    """
    with joined_world() as world, ExitStack() as held:
        # One writer per run (vaekit.runs.lock): rank 0's, for as long as it trains and writes the run.
        world.from_main(lambda: held.enter_context(run_lock(Path(out), create=not resume)))
        return _train(world, config, Path(out), data, labels, overwrite, resume, progress, hooks)


def _train(
    world: World, config: RunConfig | None, out: Path, data: np.ndarray | RawData | None, labels: np.ndarray | None,
    overwrite: bool, resume: bool, progress: bool, hooks: Hooks,
) -> TrainedVAE | None:
    if resume:
        saved, saved_info = world.from_main(lambda: read_config(out))  # rank 0's file, wherever the others run
        config = resumed_config(saved, config, out)
    config = config or RunConfig()
    splits = _splits(config, out, data, labels)
    config = _with_warmup(_with_network(_with_batch_size(config, splits, world), splits), splits)
    if config.model.conditional:
        _check_conditional(splits)
    info = _data_info(config, splits)
    if resume:
        check_same_data(saved_info, info, out)
    device = rank_device(resolve_device(config.train.device), world)
    torch.manual_seed(config.train.seed)  # weight initialization
    trainer = Trainer(
        build_model(config, info), splits, config.train, out, device,
        binarize_dynamically=config.data.binarize == "dynamic", progress_bar=progress, world=world,
        workers=config.data.workers, hooks=hooks,
    )
    # How the global batch was shared out: a resumed run states its latest launch.
    launch = {"processes": world.size, "global_batch": config.train.batch_size} if world.size > 1 else None
    with trainer.checkpointer.refusals_explained():  # a full disk: one line, and how to go on
        if resume:
            trainer.resume()
            if world.is_main:  # so that info, and the next resume, see the new budget and how this launch runs
                write_config(out, config, saved_info, launch)
        else:
            world.from_main(lambda: (prepare_output_dir(out, overwrite), write_config(out, config, info, launch)))
        with stop_on_signals() as stop:
            trainer.fit(stop)
        trainer.write_results()
    return _finish(TrainedVAE(out, device=str(device)), splits) if world.is_main else None


def _finish(trained: TrainedVAE, splits: Splits) -> TrainedVAE:
    """The pictures and the report of a trained run."""
    try:
        write_pictures(trained, splits)
        write_report(trained, inputs=(splits.test.x, splits.test.y))
    except CannotWrite as error:
        raise UserError(f"{error}; the run itself is complete and saved: once the disk has room, "
                        f"`vaekit report {trained.run_dir}` writes its page") from error
    return trained


def _splits(config: RunConfig, out: Path, data: np.ndarray | RawData | None, labels: np.ndarray | None) -> Splits:
    if data is not None:
        return split_source(data if isinstance(data, RawData) else from_array(data, labels), config.data)
    source = Path(config.data.source)  # a run written into an image folder would be read back as images
    if source.is_dir() and (out.resolve() == source.resolve() or source.resolve() in out.resolve().parents):
        raise UserError(f"{out}: lies inside the data folder {source}; choose an --out outside it")
    return load_data(config.data)


def _with_batch_size(config: RunConfig, splits: Splits, world: World) -> RunConfig:
    """The config with the batch it trains with (TrainConfig.batch_size), which config.json then records, so
    that a resume and `vaekit info` see the number used."""
    if config.train.batch_size is not None:
        return config
    batch_size = batch_size_for(config.train, len(splits.train))
    if batch_size < DEFAULT_BATCH and world.is_main:
        logger.warning("%s: %d training examples are fewer than the default batch of %d; training in batches of %d "
                       "(--batch-size chooses another)", splits.raw.description, len(splits.train), DEFAULT_BATCH,
                       batch_size)
    return replace(config, train=replace(config.train, batch_size=batch_size))


def _with_network(config: RunConfig, splits: Splits) -> RunConfig:
    """The config with the network it trains (ModelConfig.architecture auto resolved), which config.json records:
    for text the recurrent sentence VAE, the only one that reads it; for sound a convolutional one over the
    spectrogram, of four layers unless --conv-channels says otherwise (a spectrogram is ~130 x 100, larger than
    the pictures the two-layer default suits); else the MLP."""
    model = config.model
    text = splits.raw.kind == TEXT
    refused = model.architecture not in ("auto", "rnn") if text else model.architecture == "rnn"
    if refused:
        wanted = "rnn (or auto)" if text else "auto, mlp or conv"
        raise UserError(f"--architecture {model.architecture}: {splits.raw.description} is "
                        f"{'text' if text else splits.raw.kind + ' data'}, which trains with {wanted}")
    if text and model.conditional:
        raise UserError(f"{splits.raw.description}: --conditional is for labelled images, sounds and tables; "
                        "a text run has no labels: drop --conditional")
    if text:
        return replace(config, model=replace(model, architecture="rnn"))
    if model.architecture != "auto":
        return config
    if splits.raw.kind != AUDIO:
        return replace(config, model=replace(model, architecture="mlp"))
    channels = AUDIO_CONV_CHANNELS if model.conv_channels == ModelConfig().conv_channels else model.conv_channels
    return replace(config, model=replace(model, architecture="conv", conv_channels=channels))


def _with_warmup(config: RunConfig, splits: Splits) -> RunConfig:
    """The config with its KL warm-up (TrainConfig.warmup_epochs None resolved), which config.json records: for
    text a third of the epochs (a strong decoder learns to ignore z first, Bowman et al.), else none."""
    if config.train.warmup_epochs is not None:
        return config
    warmup = max(1, round(config.train.epochs / 3)) if splits.raw.kind == TEXT else 0
    return replace(config, train=replace(config.train, warmup_epochs=warmup))


def _check_conditional(splits: Splits) -> None:
    """A conditional VAE needs labels of two classes or more."""
    where = splits.raw.description
    if splits.train.y is None:
        raise UserError(f"{where}: --conditional needs labels, and this data has none; give an image folder class "
                        "sub-folders, a table a --label-column, an .npz a y array")
    classes = np.unique(np.asarray(splits.train.y))
    if len(classes) < 2:
        only = splits.raw.class_names[classes[0]] if splits.raw.class_names else classes[0]
        raise UserError(f"{where}: every training example has the label {only}; --conditional needs two classes "
                        "or more")


def _class_names(config: RunConfig, splits: Splits) -> tuple[str, ...] | None:
    """The source's class names; for a conditional run of labels without names (an .npz's y), "0", "1", ..."""
    if splits.raw.class_names is not None or not config.model.conditional:
        return splits.raw.class_names
    every = [np.asarray(y) for y in (splits.train.y, splits.validation.y, splits.test.y) if y is not None and len(y)]
    return tuple(str(i) for i in range(int(max(y.max() for y in every)) + 1))


def _data_info(config: RunConfig, splits: Splits) -> DataInfo:
    """What config.json records of the data, so the run can be used without its source."""
    return DataInfo(
        description=splits.raw.description,
        kind=splits.raw.kind,
        event_shape=splits.event_shape,
        likelihood=resolve_likelihood(config.model.likelihood, splits),  # before codec=: it may swap the codec
        codec=splits.codec.to_dict(),
        counts={"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        columns=splits.raw.columns,
        class_names=_class_names(config, splits),
        audio=splits.raw.audio,
    )
