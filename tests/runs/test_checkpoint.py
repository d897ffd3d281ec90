"""checkpoint.py: atomic writes, exact training-state round trips, and files that are refused."""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vaekit
from vaekit.config import ModelConfig
from vaekit.data.batch import Batch
from vaekit.errors import UserError
from vaekit.model.vae import VAE
from vaekit.runs.checkpoint import load_training_state, save_training_state
from vaekit.runs.files import atomic_write_bytes, remove_stale_temporaries
from vaekit.runs.weights import load_weights, read_safetensors, safetensors_bytes, save_weights

SOURCE = Path(vaekit.__file__).parent


def small_vae(hidden: int = 16) -> VAE:
    torch.manual_seed(0)
    return VAE(ModelConfig(hidden_sizes=(hidden,), latent_dim=3), (1, 4, 4), "bernoulli")


def adam_step(model: VAE, optimizer: torch.optim.Optimizer, seed: int) -> None:
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    loss = -model.observation_model(model.encode(Batch(x))[0]).log_prob(x).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


# ----- atomic writes ----------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    atomic_write_bytes(path, b"old")

    def killed(*args):
        raise KeyboardInterrupt  # what a Ctrl-C between write and rename looks like

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path: Path):
    (tmp_path / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"torn")
    (tmp_path / "notes.tmp").write_text("the user's")
    remove_stale_temporaries(tmp_path, ("checkpoint.safetensors", "model.safetensors"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


# ----- training state ---------------------------------------------------------------------------
def test_training_state_round_trip_continues_bit_for_bit(tmp_path: Path):
    """Fused Adam's moments and step, a generator and the progress survive a save and a load exactly."""
    model = small_vae()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    noise = torch.Generator().manual_seed(5)
    for seed in range(3):
        adam_step(model, optimizer, seed)
    torch.randn(7, generator=noise)
    save_training_state(tmp_path / "c.safetensors", model, optimizer, {"noise": noise}, {"epoch": 2, "best": -1.5})

    restored = small_vae()
    restored_optimizer = torch.optim.Adam(restored.parameters(), lr=1e-2, fused=True)
    state, generators = load_training_state(tmp_path / "c.safetensors", restored, restored_optimizer)
    assert state == {"epoch": 2, "best": -1.5}
    restored_noise = torch.Generator()
    restored_noise.set_state(generators["noise"])
    for seed in range(3, 6):
        adam_step(model, optimizer, seed)
        adam_step(restored, restored_optimizer, seed)
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(torch.randn(4, generator=noise), torch.randn(4, generator=restored_noise))


def test_optimizer_settings_come_from_the_config_not_the_file(tmp_path: Path):
    model = small_vae()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    adam_step(model, optimizer, 0)
    save_training_state(tmp_path / "c.safetensors", model, optimizer, {}, {})
    lowered = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)  # e.g. --resume --learning-rate 1e-4
    load_training_state(tmp_path / "c.safetensors", model, lowered)
    assert lowered.param_groups[0]["lr"] == 1e-4
    assert lowered.state_dict()["state"][0]["step"] == 1


def test_a_checkpoint_of_another_model_is_refused_before_use(tmp_path: Path):
    model = small_vae(hidden=16)
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    adam_step(model, optimizer, 0)
    save_training_state(tmp_path / "c.safetensors", model, optimizer, {}, {})
    other = small_vae(hidden=8)
    with pytest.raises(UserError, match=r"is \(16, 16\) torch.float32 but the config needs \(8, 16\)"):
        load_training_state(tmp_path / "c.safetensors", other, torch.optim.Adam(other.parameters()))


def test_optimizer_state_of_the_wrong_shape_is_refused(tmp_path: Path):
    model = small_vae()
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    adam_step(model, optimizer, 0)
    save_training_state(tmp_path / "c.safetensors", model, optimizer, {}, {})
    tensors, metadata = read_safetensors(tmp_path / "c.safetensors")
    tensors["optimizer.0.exp_avg"] = torch.zeros(3, 3)
    atomic_write_bytes(tmp_path / "c.safetensors", safetensors_bytes(tensors, metadata))  # sound, but not this model
    with pytest.raises(UserError, match=r"optimizer state 0.exp_avg is \(3, 3\)"):
        load_training_state(tmp_path / "c.safetensors", model, torch.optim.Adam(model.parameters(), fused=True))


def test_weights_with_the_wrong_dtype_are_refused(tmp_path: Path):
    model = small_vae()
    save_file({k: v.double() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    with pytest.raises(UserError, match="torch.float64 but the config needs .* torch.float32"):
        load_weights(small_vae(), tmp_path / "model.safetensors")


def test_a_torn_file_is_refused_with_a_clear_message(tmp_path: Path):
    save_weights(small_vae(), tmp_path / "model.safetensors")
    blob = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="not a safetensors file"):
        load_weights(small_vae(), tmp_path / "model.safetensors")


# ----- nothing is ever unpickled ----------------------------------------------------------------
class Payload:
    """A pickle that writes `marker` when unpickled: what a malicious 'weights' file would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "the payload ran")


def plain_pickle(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def torch_save_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"encoder.weight": Payload(marker)}, buffer)  # the zip format of torch.save
    return buffer.getvalue()


@pytest.mark.parametrize("make_payload", [plain_pickle, torch_save_pickle])
def test_the_payload_is_live(tmp_path: Path, make_payload):
    """So that the refusals below mean something: unpickling these files does run the payload."""
    marker = tmp_path / "marker"
    blob = make_payload(marker)
    if make_payload is plain_pickle:
        pickle.loads(blob)
    else:
        torch.load(io.BytesIO(blob), weights_only=False)
    assert marker.read_text() == "the payload ran"


@pytest.mark.parametrize("make_payload", [plain_pickle, torch_save_pickle])
@pytest.mark.parametrize("file, command", [
    ("model.safetensors", ["sample", "{run}", "--n", "4", "--out", "{tmp}/grid.png"]),
    ("model.safetensors", ["encode", "{run}", "--out", "{tmp}/codes.npz"]),
    ("model.safetensors", ["reconstruct", "{run}", "--out", "{tmp}/rec.png"]),
    ("checkpoint.safetensors", ["train", "--resume", "{run}", "--epochs", "4", "--quiet"]),
])
def test_a_pickled_run_file_is_refused_and_its_payload_never_runs(
    tmp_path: Path, digits_run: Path, cli, make_payload, file: str, command: list[str]
):
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(digits_run, run)
    (run / file).write_bytes(make_payload(marker))
    result = cli(*[part.format(run=run, tmp=tmp_path) for part in command])
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "not a safetensors file (a pickle" in lines[0] and "never unpickles" in lines[0], result.err
    assert not marker.exists()


def test_info_never_reads_a_pickled_weights_file(tmp_path: Path, digits_run: Path, cli):
    run, marker = tmp_path / "run", tmp_path / "marker"
    shutil.copytree(digits_run, run)
    (run / "model.safetensors").write_bytes(plain_pickle(marker))
    cli("info", run)
    assert not marker.exists()


def test_no_code_path_can_unpickle():
    """torch.load only with weights_only=True; pickle and numpy's allow_pickle never."""
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"\bpickle\.loads?\(|allow_pickle=True|cloudpickle|dill", text), path
