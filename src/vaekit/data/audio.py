"""A folder of recordings (WAV, FLAC, OGG/Vorbis), or one file, decoded with soundfile; class sub-folders
become labels, as for images.

Every clip is mixed to mono, resampled (soxr) to one rate — `sample_rate`, by default the rate most files
have — and cut or padded with silence to one length — `clip_seconds`, by default the longest clip's — and
then seen by the model as its log-magnitude spectrogram (vaekit.data.spectrogram). How long each clip was
before padding is kept, so outputs can be trimmed back to it.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from vaekit.config import DataConfig
from vaekit.data.images import IMAGE_SUFFIXES, folder_labels, relative_names, visible_files
from vaekit.data.source import AUDIO, RawData
from vaekit.data.spectrogram import AudioFormat
from vaekit.errors import UserError

logger = logging.getLogger(__name__)
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga"})
LARGEST_CLIP_BYTES = 256 * 2**20  # a clip a VAE models is seconds long; a file this large is a recording to cut
DECODE_BLOCK_BYTES = 4 << 20  # float32 samples decoded per read
LONGEST_DEFAULT_SECONDS = 30.0  # a default clip length beyond this is a mistake to point out, not to train on


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def audio_files(source: Path) -> list[Path]:
    """The recordings of a folder (or the one file), refusing a folder that mixes them with images."""
    if source.is_file():
        return [source]
    files = visible_files(source)
    clips = [path for path in files if is_audio(path)]
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    if clips and images:
        raise UserError(f"{source}: mixes recordings ({clips[0].relative_to(source)}, ...) and images "
                        f"({images[0].relative_to(source)}, ...); keep each kind in a folder of its own")
    if not clips:
        raise UserError(f"{source}: holds no recordings (WAV, FLAC, OGG); point --data at a folder of them")
    others = [path for path in files if not is_audio(path)]
    if others:
        logger.warning("%s: skipped %d file(s) that are not recordings (such as %s)", source, len(others),
                       others[0].relative_to(source))
    return clips


def decode_clip(path: Path, sample_rate: int | None, longest_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """One file as a mono float32 waveform in [-1, 1], resampled to `sample_rate` (None keeps its own). Given
    `longest_seconds`, no more than a second beyond it is decoded: a clip is cut to its length anyway, and
    silence compresses so well (FLAC's ~20,000 times) that a file of kilobytes can decode to gigabytes."""
    import soundfile
    import soxr

    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path}: is empty (0 bytes); remove it or copy the recording again")
    if size > LARGEST_CLIP_BYTES:
        raise UserError(f"{path}: is {size / 2**30:.1f} GB, a recording rather than a clip; cut it into clips of a "
                        "few seconds first (e.g. `sox in.wav clip.wav trim 0 2 : newfile : restart`)")
    try:
        wave, rate = _read_frames(path, longest_seconds)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        reason = " ".join(re.sub(r"Error opening '.*?':\s*", "", str(error).replace(str(path), "")).split())
        raise UserError(f"{path}: cannot be decoded as audio ({reason}); the file is truncated or not a "
                        "recording, remove it or copy it again") from error
    if rate <= 0 or len(wave) == 0:
        raise UserError(f"{path}: holds no samples (rate {rate} Hz, {len(wave)} frames); remove it")
    mono = wave.mean(axis=1, dtype=np.float32)
    if sample_rate is not None and sample_rate != rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return mono, rate


def _read_frames(path: Path, longest_seconds: float | None) -> tuple[np.ndarray, int]:
    """The file's frames, (frames, channels) float32 (up to a second beyond `longest_seconds`), and its rate,
    read a block at a time: the frame count in a header is a claim (a damaged FLAC's can promise gigabytes,
    which soundfile.read would allocate at once); the frames that arrive are not."""
    import soundfile

    with soundfile.SoundFile(path) as file:
        frames_per_block = max(1, DECODE_BLOCK_BYTES // (4 * file.channels))
        wanted = math.inf if longest_seconds is None else math.ceil((longest_seconds + 1) * file.samplerate)
        blocks, frames = [], 0
        while frames < wanted and len(block := file.read(frames_per_block, dtype="float32", always_2d=True)):
            blocks.append(block)
            frames += len(block)
        empty = np.zeros((0, file.channels), np.float32)
        return (np.concatenate(blocks) if blocks else empty), file.samplerate


def common_rate(files: list[Path]) -> int:
    """The sample rate most of the files have, read from their headers alone."""
    import soundfile

    rates = []
    for path in files:
        try:
            rates.append(soundfile.info(path).samplerate)
        except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError):
            decode_clip(path, None)  # says why, in its words
    (rate, _), *_ = Counter(rates).most_common()
    return rate


def read_audio(config: DataConfig) -> RawData:
    """The clips of `config.source` as (N, 1, bins, frames) log-magnitude spectrograms, labelled by sub-folder."""
    source = Path(config.source)
    files = audio_files(source)
    rate = config.sample_rate or common_rate(files)
    waves = [decode_clip(path, rate, config.clip_seconds or LONGEST_DEFAULT_SECONDS)[0] for path in files]
    lengths = np.array([len(wave) for wave in waves])
    samples = clip_samples(config, rate, lengths, files)
    audio = AudioFormat.for_clips(rate, samples)
    if samples < audio.n_fft:
        raise UserError(f"{source}: clips of {samples} samples are shorter than one STFT window ({audio.n_fft} "
                        f"samples at {rate} Hz); pass a --clip-seconds of at least {audio.n_fft / rate:.3f}")
    cut = int((lengths > samples).sum())
    if cut:
        logger.warning("%s: %d of %d clips are longer than %.3g s and were cut", source, cut, len(files),
                       samples / rate)
    clips = np.zeros((len(waves), samples), dtype=np.float32)
    for row, wave in enumerate(waves):
        clips[row, : min(len(wave), samples)] = wave[:samples]
    folder = source if source.is_dir() else source.parent
    labels, class_names = folder_labels(folder, files) if source.is_dir() else (None, None)
    return RawData(
        x=audio.spectrograms(clips), y=labels, kind=AUDIO, description=f"recordings {source}", class_names=class_names,
        names=relative_names(folder, files), audio=audio.to_dict(), lengths=np.minimum(lengths, samples),
    )


def clip_samples(config: DataConfig, rate: int, lengths: np.ndarray, files: list[Path]) -> int:
    """Samples per clip: `clip_seconds` at `rate`, or by default the longest clip's (within reason)."""
    if config.clip_seconds is not None:
        return max(1, round(config.clip_seconds * rate))
    longest = int(lengths.max())
    if longest > LONGEST_DEFAULT_SECONDS * rate:
        path = files[int(lengths.argmax())]
        raise UserError(f"{path}: is over {LONGEST_DEFAULT_SECONDS:.0f} s long, and every clip would be padded to "
                        "its length; pass --clip-seconds to cut the clips to one length (e.g. --clip-seconds 2)")
    return longest
