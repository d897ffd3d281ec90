"""Sound: a folder of recordings read as spectrograms (one rate, one length), a model trained on them, and
WAV files, spectrogram pictures and inline players out; bad recordings refused in one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from vaekit.config import DataConfig
from vaekit.data.audio import read_audio
from vaekit.data.loading import detect_format
from vaekit.data.spectrogram import AudioFormat
from vaekit.errors import UserError

RATE = 8000


def tone(frequency: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t) * np.hanning(len(t))).astype(np.float32)


def tone_folder(folder: Path, per_class: int = 12) -> Path:
    """Two classes of tones, low (200-400 Hz) and high (1.2-2 kHz), 0.2-0.3 s, mostly 8 kHz WAV."""
    rng = np.random.default_rng(0)
    for name, (low, high) in (("low", (200, 400)), ("high", (1200, 2000))):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            seconds = rng.uniform(0.2, 0.3)
            if i == 0:  # one of another rate and two channels, one FLAC, one OGG/Vorbis: all read alike
                wave = tone(rng.uniform(low, high), seconds, 16000)
                soundfile.write(folder / name / f"{i:02d}.wav", np.stack([wave, wave], axis=1), 16000)
                continue
            suffix = {1: "flac", 2: "ogg"}.get(i, "wav")
            soundfile.write(folder / name / f"{i:02d}.{suffix}", tone(rng.uniform(low, high), seconds), RATE)
    return folder


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    return tone_folder(tmp_path_factory.mktemp("tones") / "tones")


@pytest.fixture(scope="module")
def tone_run(tones: Path, tmp_path_factory) -> Path:
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("runs") / "tones"
    assert main(["train", "--data", str(tones), "--out", str(out), "--epochs", "4", "--batch-size", "8",
                 "--latent-dim", "2", "--hidden-sizes", "32", "--validation-fraction", "0.2", "--quiet"]) == 0
    return out


def test_a_folder_of_recordings_is_read_at_one_rate_and_length_with_labels(tones: Path):
    assert detect_format(DataConfig(source=str(tones))) == "audio"
    raw = read_audio(DataConfig(source=str(tones)))
    audio = AudioFormat.from_dict(raw.audio)
    assert audio.sample_rate == RATE  # the rate most files have; the 16 kHz ones are resampled
    assert audio.samples == raw.lengths.max() and 0.2 * RATE <= raw.lengths.min() <= raw.lengths.max() <= 0.3 * RATE
    assert raw.x.shape == (24, 1, audio.bins, audio.frames) and raw.x.dtype == np.float32
    assert raw.class_names == ("high", "low") and sorted(np.bincount(raw.y)) == [12, 12]
    assert raw.names[0] == "high/00.wav" and raw.kind == "audio"
    again = read_audio(DataConfig(source=str(tones), sample_rate=4000, clip_seconds=0.1))
    assert AudioFormat.from_dict(again.audio).samples == 400 and again.lengths.max() == 400


def test_griffin_lim_brings_a_spectrogram_back_as_sound_within_a_few_db(tones: Path):
    audio = AudioFormat.for_clips(RATE, 2400)
    wave = tone(440, 0.3)[None]
    spectrogram = audio.spectrograms(wave)
    back = audio.spectrograms(audio.waveforms(spectrogram))
    magnitude, rebuilt = np.exp(spectrogram), np.exp(back)
    convergence_db = 20 * np.log10(np.linalg.norm(rebuilt - magnitude) / np.linalg.norm(magnitude))
    assert convergence_db < -10, convergence_db  # measured -17 dB after 32 iterations


def test_a_sound_run_trains_a_conv_net_and_writes_wavs_pictures_and_players(tone_run: Path, tones: Path, cli,
                                                                            tmp_path: Path):
    import json

    config = json.loads((tone_run / "config.json").read_text())
    assert config["config"]["model"]["architecture"] == "conv" and config["data"]["kind"] == "audio"
    assert config["config"]["model"]["conv_channels"] == [16, 32, 32, 64]
    assert cli("sample", tone_run, "--n", "3", "--out", tmp_path / "clips").code == 0
    clips = sorted((tmp_path / "clips").iterdir())
    assert [c.name for c in clips] == ["00000.wav", "00001.wav", "00002.wav"]
    wave, rate = soundfile.read(clips[0])
    assert rate == RATE and len(wave) == config["data"]["audio"]["samples"]
    assert cli("sample", tone_run, "--n", "4", "--out", tmp_path / "grid.png").code == 0
    refused = cli("sample", tone_run, "--out", tmp_path / "one.wav")
    assert refused.code == 2 and "for sound, WAV files" in refused.err
    assert cli("reconstruct", tone_run, "--data", tones / "low" / "05.wav", "--out", tmp_path / "one").code == 0
    (rebuilt,) = (tmp_path / "one").glob("*.wav")
    assert len(soundfile.read(rebuilt)[0]) == len(soundfile.read(tones / "low" / "05.wav")[0])  # padding cut off
    assert cli("reconstruct", tone_run, "--data", tones, "--out", tmp_path / "all.png").code == 0
    assert cli("encode", tone_run, "--data", tones / "high" / "03.wav", "--out", tmp_path / "codes.npz").code == 0
    assert np.load(tmp_path / "codes.npz")["loc"].shape == (1, 2)
    assert cli("interpolate", tone_run, "--data", tones, "--pairs", "2", "--steps", "3", "--out",
               tmp_path / "path").code == 0
    assert len(list((tmp_path / "path").glob("*.wav"))) == 6  # pair by pair, step by step
    assert cli("interpolate", tone_run, "--data", tones, "--out", tmp_path / "path.png").code == 0
    evaluated = cli("evaluate", tone_run, "--importance-samples", "10")
    assert evaluated.code == 0 and "nats" in evaluated.out
    report = (tone_run / "report.html").read_text()
    assert report.count('<audio controls preload="none" src="data:audio/wav;base64,') == 12  # 4 samples, 4 + 4
    assert (tone_run / "samples.png").exists() and (tone_run / "reconstructions.png").exists()


# ----- bad recordings ----------------------------------------------------------------------------
def refusal(cli, tmp_path: Path, source: Path, *flags: str) -> str:
    result = cli("train", "--data", source, "--out", tmp_path / "out", "--epochs", "1", *flags)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not (tmp_path / "out").exists()
    return result.err


@pytest.mark.parametrize(("damage", "said"), [
    (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    (lambda path: path.write_bytes(path.read_bytes()[:30]), "cannot be decoded as audio"),
    (lambda path: path.write_text("not a recording at all"), "cannot be decoded as audio"),
    (lambda path: os.truncate(path, 300 * 2**20), "is 0.3 GB, a recording rather than a clip"),
], ids=["empty", "truncated", "text named .wav", "huge"])
def test_a_bad_recording_is_named_in_one_line(damage, said, tmp_path: Path, cli):
    folder = tone_folder(tmp_path / "tones", per_class=4)
    victim = folder / "low" / "03.wav"
    damage(victim)
    assert f"{victim}: {said}" in refusal(cli, tmp_path, folder)


def test_recordings_mixed_with_images_are_refused(tmp_path: Path, cli):
    from PIL import Image

    folder = tone_folder(tmp_path / "tones", per_class=4)
    Image.new("L", (8, 8)).save(folder / "low" / "picture.png")
    assert "mixes recordings" in refusal(cli, tmp_path, folder) and "picture.png" in refusal(cli, tmp_path, folder)


def test_clips_shorter_than_one_window_and_a_rate_of_zero_are_refused(tmp_path: Path, cli):
    folder = tone_folder(tmp_path / "tones", per_class=4)
    assert "shorter than one STFT window" in refusal(cli, tmp_path, folder, "--clip-seconds", "0.001")
    assert "sample_rate = 0 must be above 0 Hz" in refusal(cli, tmp_path, folder, "--sample-rate", "0")


def test_read_audio_raises_user_errors_only(tmp_path: Path):
    with pytest.raises(UserError, match="holds no recordings"):
        (tmp_path / "empty").mkdir()
        read_audio(DataConfig(source=str(tmp_path / "empty"), data_format="audio"))
