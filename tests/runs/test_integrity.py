"""Silent corruption is refused: a checksum of every tensor is written with weights and checkpoints and checked
on every load; NaN or infinite weights are refused whatever their checksum; the line says what is left."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from vaekit.errors import UserError
from vaekit.runs.integrity import CHECKSUM_KEY, checksum
from vaekit.runs.trained import TrainedVAE
from vaekit.runs.weights import read_safetensors, safetensors_bytes


def data_region(path: Path) -> int:
    """Where a safetensors file's tensor bytes begin: after its 8-byte length and JSON header."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def flip(path: Path, offset: int, bit: int = 0) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 1 << bit
    path.write_bytes(bytes(blob))


@pytest.fixture
def run(digits_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


def test_a_flipped_bit_in_the_weights_is_refused_naming_the_file_and_what_is_intact(run: Path, cli, tmp_path):
    weights = run / "model.safetensors"
    flip(weights, data_region(weights) + 1000, bit=7)  # a sign bit of one weight: still finite, silently wrong
    result = cli("sample", run, "--n", "4", "--out", tmp_path / "grid.png")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert f"{weights}: damaged (its contents do not match the checksum" in result.err
    assert "checkpoint.safetensors is intact (3 epochs trained)" in result.err and "--overwrite" in result.err
    assert not (tmp_path / "grid.png").exists()


def test_a_damaged_checkpoint_refuses_resume_and_the_best_weights_still_work(run: Path, cli, tmp_path):
    checkpoint = run / "checkpoint.safetensors"
    flip(checkpoint, data_region(checkpoint) + 5)
    before = checkpoint.read_bytes()
    result = cli("train", "--resume", run, "--epochs", "5")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert f"{checkpoint}: damaged" in result.err and "cannot resume from it" in result.err
    assert "model.safetensors is intact (the best weights), so sample, evaluate and encode still work" in result.err
    assert checkpoint.read_bytes() == before  # nothing overwritten
    assert cli("sample", run, "--n", "4", "--out", tmp_path / "grid.png").code == 0


def test_both_damaged_says_so(run: Path, cli, tmp_path):
    for name in ("model.safetensors", "checkpoint.safetensors"):
        flip(run / name, data_region(run / name) + 9)
    result = cli("sample", run, "--out", tmp_path / "grid.png")
    assert result.code == 2 and "there is no intact checkpoint.safetensors either" in result.err


def test_non_finite_weights_are_refused_even_with_a_valid_checksum(run: Path, cli, tmp_path):
    weights = run / "model.safetensors"
    tensors, metadata = read_safetensors(weights)
    name = sorted(key for key, value in tensors.items() if value.is_floating_point())[0]
    tensors[name].view(-1)[0] = float("nan")
    weights.write_bytes(safetensors_bytes(tensors, {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}))
    result = cli("sample", run, "--out", tmp_path / "grid.png")
    assert result.code == 2 and f"{name} holds NaN or infinite values" in result.err


def test_weights_written_before_checksums_existed_still_load(run: Path):
    weights = run / "model.safetensors"
    tensors, metadata = read_safetensors(weights)
    assert len(metadata[CHECKSUM_KEY]) == 64
    save_file(tensors, weights, {k: v for k, v in metadata.items() if k != CHECKSUM_KEY})
    assert TrainedVAE(run).sample(2).shape[0] == 2


def test_the_checksum_is_of_the_contents_not_of_their_layout():
    tensors, metadata = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(2, dtype=torch.bfloat16)}, {"k": "1"}
    digest = checksum(tensors, metadata)
    assert digest == checksum(dict(reversed(tensors.items())), metadata)
    assert digest == checksum({"b": tensors["b"].t().contiguous().t(), "a": tensors["a"]}, metadata)
    assert digest == checksum(tensors, {**metadata, CHECKSUM_KEY: "anything"})  # all but itself
    assert digest != checksum({"b": tensors["b"].reshape(3, 2), "a": tensors["a"]}, metadata)
    assert digest != checksum({"c": tensors["b"], "a": tensors["a"]}, metadata)
    assert digest != checksum(tensors, {"k": "2"})


@settings(max_examples=40, deadline=None)
@given(position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_of_a_checkpoint_is_caught(tmp_path_factory, position: float, bit: int):
    """Anywhere in the file: the header (unreadable, or metadata that no longer matches) or the tensors; the
    checksum covers the metadata too (a checkpoint's progress), not only the tensors."""
    folder = tmp_path_factory.mktemp("flip")
    path = folder / "c.safetensors"
    path.write_bytes(safetensors_bytes({"w": torch.randn(50, 7), "g": torch.arange(9, dtype=torch.uint8)},
                                       {"vaekit_state": json.dumps({"epoch": 1})}))
    original = read_safetensors(path)
    flip(path, int(position * path.stat().st_size), bit)
    try:
        tensors, metadata = read_safetensors(path)
    except UserError as error:
        assert "\n" not in str(error)
    else:  # a flip that changed nothing the reader returns: padding of the header, say
        assert {k: v.tolist() for k, v in tensors.items()} == {k: v.tolist() for k, v in original[0].items()}
        assert metadata == original[1]


def test_resume_mends_damaged_best_weights_from_a_checkpoint_that_holds_them(run: Path, cli):
    weights = run / "model.safetensors"
    good = weights.read_bytes()
    flip(weights, data_region(weights) + 3)
    assert json.loads((run / "results.json").read_text())["best_epoch"] == 3  # the checkpoint's own epoch
    assert cli("train", "--resume", run).code == 0
    assert weights.read_bytes() == good


def test_resume_refuses_damaged_best_weights_it_cannot_mend_before_training(run: Path, cli):
    checkpoint, weights = run / "checkpoint.safetensors", run / "model.safetensors"
    tensors, metadata = read_safetensors(checkpoint)
    state = json.loads(metadata["vaekit_state"])
    state["state"]["progress"]["best_epoch"] = 2  # the best weights are of an earlier epoch than the checkpoint
    metadata["vaekit_state"] = json.dumps(state)
    checkpoint.write_bytes(safetensors_bytes(tensors, metadata))
    before = checkpoint.read_bytes()
    flip(weights, data_region(weights) + 3)
    result = cli("train", "--resume", run, "--epochs", "5")
    assert result.code == 2 and f"{weights}: damaged" in result.err
    assert "checkpoint.safetensors is intact (3 epochs trained)" in result.err
    assert checkpoint.read_bytes() == before and len((run / "metrics.jsonl").read_text().splitlines()) == 3
