"""Sound out of a model of spectrograms: WAV files at the run's rate, and pictures of the spectrograms.

A model of audio works on log-magnitude spectrograms (vaekit.data.spectrogram); every clip it writes is
turned back into a waveform by Griffin-Lim and saved as 16-bit PCM WAV with soundfile.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from vaekit.data.spectrogram import FLOOR, AudioFormat
from vaekit.errors import UserError
from vaekit.runs.directory import DataInfo
from vaekit.runs.files import atomic_write_folder


def audio_format(data: DataInfo) -> AudioFormat:
    if data.audio is None:
        raise UserError(f"this run models {data.kind} data, not sound")
    return AudioFormat.from_dict(data.audio)


def spectrogram_pixels(examples: np.ndarray) -> np.ndarray:
    """(N, 1, bins, frames) log-magnitudes as (N, 1, bins, frames) uint8 for a picture: low frequencies at the
    bottom, silence (the floor) black, the loudest bin of the lot white."""
    low, high = float(np.log(FLOOR)), float(np.max(examples, initial=np.log(FLOOR) + 1))
    scaled = np.clip((examples - low) / max(high - low, 1e-6), 0, 1)[:, :, ::-1]
    return np.rint(scaled * 255).astype(np.uint8)


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(wave, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def waves_of(examples: np.ndarray, data: DataInfo) -> np.ndarray:
    """(N, samples) waveforms of (N, 1, bins, frames) log-magnitude spectrograms."""
    return audio_format(data).waveforms(examples)


def write_wav_folder(folder: Path, examples: np.ndarray, data: DataInfo, lengths: np.ndarray | None = None) -> None:
    """One WAV per example, 00000.wav, ..., written to a hidden sibling and renamed into place whole; each cut to
    its clip's length before padding where `lengths` gives them (reconstructions of recordings)."""
    rate = audio_format(data).sample_rate
    waves = list(waves_of(examples, data))
    if lengths is not None:
        waves = [wave[: max(1, int(length))] for wave, length in zip(waves, lengths)]
    digits = max(5, len(str(len(waves) - 1)))
    atomic_write_folder(folder, ((f"{i:0{digits}d}.wav", wav_bytes(wave, rate)) for i, wave in enumerate(waves)))


def audio_players(examples: np.ndarray, data: DataInfo, caption: str) -> str:
    """HTML: an inline <audio> player (a data: URI of a WAV) per example, for the report."""
    rate = audio_format(data).sample_rate
    players = "".join(
        f'<audio controls preload="none" src="data:audio/wav;base64,{base64.b64encode(wav_bytes(w, rate)).decode()}">'
        "</audio>" for w in waves_of(examples, data))
    return f'<figure class="clips">{players}<figcaption>{html.escape(caption)}</figcaption></figure>'
