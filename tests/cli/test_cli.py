"""The command line on the embedded digits: train, sample, reconstruct, encode, info, --help."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaekit.cli import COMMANDS


def test_train_writes_a_complete_run_with_metrics_per_epoch(digits_run):
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
                 "results.json", "samples.png", "reconstructions.png", "loss.png"):
        assert (digits_run / name).is_file(), name
    lines = [json.loads(line) for line in (digits_run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    for key in ("train_elbo", "train_reconstruction", "train_kl", "val_elbo", "val_reconstruction", "val_kl",
                "seconds", "images_per_second"):
        assert key in lines[-1]
    last = lines[-1]
    assert last["val_elbo"] == pytest.approx(last["val_reconstruction"] - last["val_kl"])
    assert Image.open(digits_run / "samples.png").size[0] > 200  # enlarged so a person can see it


def test_sample_writes_png_and_npy(cli, digits_run, tmp_path):
    result = cli("sample", digits_run, "--n", "16", "--out", tmp_path / "grid.png")
    assert result.code == 0, result.err
    assert Image.open(tmp_path / "grid.png").mode == "RGB"
    result = cli("sample", digits_run, "--n", "5", "--out", tmp_path / "x.npy", "--json")
    assert json.loads(result.out)["shape"] == [5, 1, 8, 8]
    assert np.load(tmp_path / "x.npy").dtype == np.uint8


def test_sample_refuses_to_overwrite(cli, digits_run, tmp_path):
    target = tmp_path / "grid.png"
    target.write_bytes(b"keep")
    result = cli("sample", digits_run, "--out", target)
    assert result.code == 2 and "already exists" in result.err and target.read_bytes() == b"keep"


def test_reconstruct_and_encode(cli, digits_run, tmp_path):
    result = cli("reconstruct", digits_run, "--out", tmp_path / "recon.png", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["count"] == 32
    result = cli("encode", digits_run, "--data", "digits", "--split", "all", "--out", tmp_path / "codes.npz")
    assert result.code == 0, result.err
    codes = np.load(tmp_path / "codes.npz")
    assert codes["loc"].shape == (1797, 20) and codes["labels"].shape == (1797,) and (codes["scale"] > 0).all()


def test_encode_writes_the_source_rows_and_class_names(cli, digits_run, tmp_path):
    from vaekit.data.digits import read_digits

    result = cli("encode", digits_run, "--out", tmp_path / "codes.npz")  # the run's own shuffled test split
    assert result.code == 0 and "rows, labels, class_names" in result.out
    codes, digits = np.load(tmp_path / "codes.npz"), read_digits()
    assert codes["class_names"].tolist() == [str(d) for d in range(10)] and "names" not in codes
    assert len(set(codes["rows"])) == len(codes["rows"]) == 300
    assert np.array_equal(codes["labels"], digits.y[codes["rows"]])
    again = cli("encode", digits_run, "--data", "digits", "--split", "all", "--out", tmp_path / "all.npz")
    assert again.code == 0 and np.load(tmp_path / "all.npz")["rows"].tolist() == list(range(1797))


def test_info_prints_settings_and_figures(cli, digits_run):
    result = cli("info", digits_run)
    assert result.code == 0 and "test       -ELBO" in result.out
    # which -ELBO this is, beside `vaekit evaluate`'s from K importance samples
    assert "(a one-sample estimate on the test split, written at the end of training)" in result.out
    assert "with the best averaged weights of epoch" in result.out
    payload = json.loads(cli("info", digits_run, "--json").out)
    assert payload["results"]["test_elbo"] < 0 and payload["data"]["event_shape"] == [1, 8, 8]


@pytest.mark.parametrize("command", [None] + [m.__name__.rsplit(".", 1)[-1].replace("_", "-") for m in COMMANDS])
def test_every_command_has_help_with_examples(cli, command):
    result = cli(*([command] if command else []), "--help")
    assert result.code == 0 and "usage: vaekit" in result.out
    if command not in (None, "info"):
        assert "example" in result.out


def test_a_usage_mistake_is_one_line_with_status_2(cli):
    result = cli("train", "--epochs", "many")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "--epochs" in result.err


def test_help_version_usage_errors_and_info_load_no_torch(digits_run):
    """They start in a fraction of a second: torch alone takes seconds to import."""
    code = f"""
import sys
from vaekit.cli import main
for argv in (["--help"], ["--version"], ["train", "--help"], ["train", "--epochz", "3"], ["sample", "--n", "x"]):
    try:
        main(argv)
    except SystemExit:
        pass
assert main(["info", {str(digits_run)!r}]) == 0
assert main(["info", {str(digits_run)!r}, "--json"]) == 0
loaded = sorted(name for name in sys.modules if name == "torch" or name.startswith("torch."))
assert not loaded, loaded
"""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "did you mean --epochs?" in completed.stderr and "test       -ELBO" in completed.stdout


def test_a_refusal_of_the_file_system_anywhere_is_one_line_and_any_other_os_error_is_a_bug(monkeypatch, cli, tmp_path):
    import errno

    from vaekit.cli import info

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.png"))

    monkeypatch.setattr(info, "run", full_disk)
    result = cli("info", tmp_path)
    assert result.code == 2 and result.err.startswith(f"vaekit info: error: {tmp_path / 'out.png'}: no space left")
    assert len(result.err.strip().splitlines()) == 1

    def bug(args):
        raise OSError(errno.EBADF, "Bad file descriptor", "x")

    monkeypatch.setattr(info, "run", bug)
    with pytest.raises(OSError, match="Bad file descriptor"):
        cli("info", tmp_path)
