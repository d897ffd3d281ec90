"""training/loop.py: exact resume from every point a crash can hit, Ctrl-C, the divergence guard,
determinism and checkpoint cadence. In-process, on the embedded digits with a tiny model."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vaekit.api
from helpers import STEPS_PER_EPOCH, assert_same_run, tensors, tiny
from vaekit.api import train
from vaekit.data import load_data
from vaekit.errors import UserError
from vaekit.model.vae import VAE
from vaekit.runs.checkpoint import load_training_state
from vaekit.runs.directory import STATE_KEY, build_model, read_config
from vaekit.runs.weights import read_safetensors
from vaekit.runtime.world import World
from vaekit.training.console import ConsoleReporter, Reporter
from vaekit.training.data import MEAN_EXAMPLES
from vaekit.training.guard import TrainingDiverged
from vaekit.training.loop import Hooks, Trainer, choose_reporter
from vaekit.training.progress import Progress
from vaekit.training.signals import TrainingInterrupted, stop_on_signals

# Equal runs need equal thread counts; and one thread keeps a tiny model fast on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    train(tiny(), out)
    return out


class Crash(Exception):
    """Stands for a kill: raised where a run file was about to be written, so it never is."""


def crash_before(name: str, when: Callable[[int, Progress], bool]) -> Hooks:
    """Hooks that raise `Crash` instead of writing the run file `name`, on the write for which
    `when(n, progress)` holds (n counts the writes of that file, from 1)."""
    calls = itertools.count(1)

    def before_write(written: str, progress: Progress) -> None:
        if written == name and when(next(calls), progress):
            raise Crash

    return Hooks(before_write=before_write)


def end_of_epoch(epoch: int) -> Callable[[int, Progress], bool]:
    """The checkpoint written at the end of `epoch` (1-based): after its metrics line, before best weights."""
    return lambda call, progress: progress.step_in_epoch == 0 and progress.epoch == epoch


CRASHES = {
    "before the first checkpoint": ("checkpoint.safetensors", lambda call, progress: call == 1),
    "instead of a mid-epoch checkpoint": ("checkpoint.safetensors", lambda call, progress: call == 3),
    "after a metrics line, before its checkpoint": ("checkpoint.safetensors", end_of_epoch(2)),
    "after a checkpoint, before its best weights": ("model.safetensors", lambda call, progress: call == 2),
    "after training, before results.json": ("results.json", lambda call, progress: True),
}


@pytest.mark.parametrize("moment", list(CRASHES))
def test_resume_after_a_crash_at_any_point_is_bit_exact(tmp_path: Path, reference: Path, moment):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(tiny(), out, hooks=crash_before(*CRASHES[moment]))
    train(None, out, resume=True)
    assert_same_run(out, reference)


def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_restores_handlers(tmp_path: Path, reference):
    out = tmp_path / "run"
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def pressed_at_step_30(progress: Progress) -> None:
        if progress.global_step == 30:
            signal.raise_signal(signal.SIGINT)  # arrives as the step ends; the loop looks right after

    with pytest.raises(
        TrainingInterrupted, match=f"Ctrl-C \\(SIGINT\\) at epoch 2, step 8 of 22; .* vaekit train --resume {out}$"
    ) as stopped:
        train(tiny(), out, hooks=Hooks(after_step=pressed_at_step_30))
    assert stopped.value.exit_status == 130
    assert {number: signal.getsignal(number) for number in before} == before
    config, data = read_config(out)
    model = build_model(config, data)
    saved, _ = load_training_state(out / "checkpoint.safetensors", model, torch.optim.Adam(model.parameters()))
    assert (saved["progress"]["global_step"], saved["progress"]["step_in_epoch"]) == (30, 8)
    train(None, out, resume=True)
    assert_same_run(out, reference)


def test_a_second_signal_quits_at_once():
    with stop_on_signals() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.signal_number == signal.SIGTERM
        signal.raise_signal(signal.SIGINT)
        assert stop.signal_number == signal.SIGTERM  # the first one is what stopped training
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_same_seed_same_metrics_and_weights(tmp_path: Path, reference: Path):
    train(tiny(), tmp_path / "again")
    assert_same_run(tmp_path / "again", reference)
    train(tiny(seed=2), tmp_path / "other")
    assert tensors(tmp_path / "other" / "model.safetensors") != tensors(reference / "model.safetensors")


def test_a_finished_run_can_go_on_exactly(tmp_path: Path, reference: Path):
    """Resuming with more epochs gives the run that had them from the start (and updates config.json)."""
    longer = tmp_path / "longer"
    train(tiny(epochs=4), longer)
    out = tmp_path / "run"
    train(tiny(), out)
    train(tiny(epochs=4), out, resume=True)
    assert read_config(out)[0].train.epochs == 4
    assert_same_run(out, longer)


def test_resume_refuses_settings_that_would_make_another_run(tmp_path: Path, reference: Path):
    with pytest.raises(UserError, match="keeps seed = 1 \\(not 7\\)"):
        train(tiny(seed=7), reference, resume=True)


def test_resume_without_a_checkpoint_keeps_the_best_weights(tmp_path: Path, reference: Path):
    out = tmp_path / "run"
    train(tiny(), out)
    (out / "checkpoint.safetensors").unlink()
    with pytest.raises(UserError, match="missing, so the run cannot continue; its best weights"):
        train(None, out, resume=True)
    assert (out / "model.safetensors").exists()


# ----- the divergence guard -----------------------------------------------------------------------
def test_an_absurd_learning_rate_stops_training_with_the_last_good_checkpoint(tmp_path: Path, cli):
    out = tmp_path / "run"
    result = cli("train", "--data", "digits", "--out", out, "--hidden-sizes", "32", "--latent-dim", "4",
                 "--learning-rate", "1e6", "--batch-size", "128", "--checkpoint-every-steps", "1", "--quiet")
    assert result.code == 2
    message = result.err.strip()
    assert len(message.splitlines()) == 1
    assert "the loss became NaN or infinite at epoch 1, step 2 of 11" in message
    assert "learning rate too high" in message and "(1e+06)" in message and "Nothing was retried" in message
    assert f"vaekit train --resume {out} --learning-rate 100000" in message
    config, data = read_config(out)
    model = build_model(config, data)
    saved, _ = load_training_state(out / "checkpoint.safetensors", model, torch.optim.Adam(model.parameters()))
    assert saved["progress"]["global_step"] == 1
    assert all(torch.isfinite(value).all() for value in model.state_dict().values())
    assert not (out / "model.safetensors").exists() and not (out / "results.json").exists()


def test_a_nan_gradient_with_a_finite_loss_is_caught_before_the_update(tmp_path: Path, monkeypatch):
    backward_passes, built = itertools.count(1), []

    def poisoned(config, info):
        model = build_model(config, info)
        model.decoder.out.bias.register_hook(lambda grad: grad * float("nan") if next(backward_passes) == 3 else grad)
        built.append(model)
        return model

    monkeypatch.setattr(vaekit.api, "build_model", poisoned)
    with pytest.raises(
        TrainingDiverged, match=r"the gradient of decoder\.out\.bias became NaN or infinite at epoch 1, step 3"
    ):
        train(tiny(checkpoint_every_steps=None, step="autograd"), tmp_path / "run")  # a hook needs autograd's step
    assert all(torch.isfinite(value).all() for value in built[0].state_dict().values()), "the NaN step was taken"


# ----- checkpoint cadence ---------------------------------------------------------------------------
@pytest.mark.parametrize("settings, mid_epoch", [
    ({"checkpoint_every_steps": 5}, lambda step: step % 5 == 0),
    ({"checkpoint_every_steps": None, "checkpoint_every_minutes": 1e-9}, lambda step: True),
    ({"checkpoint_every_steps": None}, lambda step: False),
])
def test_checkpoints_every_epoch_and_every_n_steps_or_minutes(tmp_path: Path, settings, mid_epoch):
    written = []

    def count(name: str, progress: Progress) -> None:
        if name == "checkpoint.safetensors":
            written.append(progress.global_step)

    train(tiny(epochs=2, **settings), tmp_path / "run", hooks=Hooks(before_write=count))
    steps = range(1, 2 * STEPS_PER_EPOCH + 1)
    # Mid-epoch checkpoints skip an epoch's last step, where the end-of-epoch one follows at once.
    expected = [s for s in steps if s % STEPS_PER_EPOCH == 0 or mid_epoch(s)]
    assert written == expected


def rewrite_progress(path: Path, change: Callable[[dict], None]) -> None:
    tensors, metadata = read_safetensors(path)
    header = json.loads(metadata[STATE_KEY])
    change(header["state"])
    save_file(tensors, path, {STATE_KEY: json.dumps(header)})


def test_a_checkpoint_from_another_device_resumes_with_a_warning(tmp_path: Path, caplog):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(tiny(), out, hooks=crash_before("checkpoint.safetensors", lambda call, progress: call == 5))
    rewrite_progress(out / "checkpoint.safetensors", lambda state: state.update(noise_device="cuda"))
    train(None, out, resume=True)
    assert "written on cuda, resumed on cpu: training continues, but not bit for bit" in caplog.text
    assert (out / "results.json").exists()


def test_a_checkpoint_with_unknown_progress_is_refused(tmp_path: Path, reference: Path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    rewrite_progress(out / "checkpoint.safetensors", lambda state: state["progress"].update(surprise=1))
    with pytest.raises(UserError, match="training progress in an unknown format"):
        train(None, out, resume=True)


@pytest.mark.parametrize("from_data", [True, False])
def test_training_starts_the_decoder_output_at_the_training_mean(tmp_path: Path, from_data: bool):
    config = tiny(output_bias_from_data=from_data)
    splits = load_data(config.data)
    torch.manual_seed(0)
    model = VAE(config.model, splits.event_shape, "bernoulli")
    initial = model.decoder.out.bias.detach().clone()
    Trainer(model, splits, config.train, tmp_path, torch.device("cpu"))
    first = torch.from_numpy(splits.train.x[:MEAN_EXAMPLES])  # a random sample: the split is shuffled
    mean = splits.codec.to_model(first).double().mean(0).float()
    expected = torch.logit(mean.clamp(1e-3, 1 - 1e-3)).flatten() if from_data else initial
    torch.testing.assert_close(model.decoder.out.bias.detach(), expected)


# ----- what training shows -----------------------------------------------------------------------

def test_a_log_gets_the_epoch_lines_and_no_progress_bar(tmp_path: Path, capsys):
    config = tiny(epochs=2)
    splits = load_data(config.data)
    model = VAE(config.model, splits.event_shape, "bernoulli")
    Trainer(model, splits, config.train, tmp_path, torch.device("cpu"), binarize_dynamically=True,
            progress_bar=True).fit()
    captured = capsys.readouterr()  # stderr is not a terminal here, as in `vaekit train ... 2> log`
    shown = captured.out + captured.err
    assert "\r" not in shown and "it/s" not in shown
    assert [line.split()[1] for line in captured.out.splitlines() if line.startswith("epoch")] == ["1", "2"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_progress_bar_and_only_rank_0_shows_anything(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert isinstance(choose_reporter(True, 30, World()), ConsoleReporter)
    assert type(choose_reporter(True, 30, World(rank=1, size=2))) is Reporter
    assert type(choose_reporter(False, 30, World())) is Reporter
