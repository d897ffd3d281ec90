"""How a VAE sees sound: the log-magnitude spectrogram of a fixed-length clip, and back to a waveform.

The short-time Fourier transform (torch.stft, a Hann window, hop of half a window) of a clip of `samples`
samples gives `bins` frequencies by `frames` frames; the model sees log(|STFT| + FLOOR) as a one-channel
picture (1, bins, frames), modelled with a Gaussian likelihood. Phase is dropped, so a waveform comes back
by Griffin-Lim: phases are re-estimated by alternating projections between the STFT of a signal and the
given magnitudes (Griffin & Lim 1984), starting from random phases drawn by a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FLOOR = 1e-3  # added to |STFT| before the log: silence is log(1e-3) = -6.9, not -inf
WINDOW_SECONDS = 0.016  # ~16 ms windows: 256 samples at 16 kHz or 22.05 kHz, 512 at 44.1 kHz
GRIFFIN_LIM_ITERATIONS = 32


@dataclass(frozen=True)
class AudioFormat:
    """One rate, one clip length and one STFT for every clip of a run (saved in its config.json)."""

    sample_rate: int
    samples: int  # per clip: longer recordings are cut, shorter ones padded with silence
    n_fft: int
    hop_length: int

    @classmethod
    def for_clips(cls, sample_rate: int, samples: int) -> AudioFormat:
        """The STFT of ~16 ms windows (a power of two) and half-window hops for this rate."""
        n_fft = 2 ** max(4, round(math.log2(sample_rate * WINDOW_SECONDS)))
        return cls(sample_rate, samples, n_fft, n_fft // 2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AudioFormat:
        return cls(**{key: int(raw[key]) for key in ("sample_rate", "samples", "n_fft", "hop_length")})

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames(self) -> int:
        return self.samples // self.hop_length + 1  # torch.stft with center=True

    @property
    def event_shape(self) -> tuple[int, int, int]:
        return (1, self.bins, self.frames)

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def spectrograms(self, waves: np.ndarray) -> np.ndarray:
        """(N, samples) float waveforms in [-1, 1] to (N, 1, bins, frames) float32 log-magnitudes."""
        import torch

        stft = torch.stft(torch.as_tensor(waves, dtype=torch.float32), self.n_fft, self.hop_length,
                          window=torch.hann_window(self.n_fft), center=True, return_complex=True)
        return torch.log(stft.abs() + FLOOR)[:, None].numpy()

    def waveforms(self, log_magnitudes: np.ndarray, iterations: int = GRIFFIN_LIM_ITERATIONS,
                  seed: int = 0) -> np.ndarray:
        """(N, 1, bins, frames) log-magnitudes back to (N, samples) float32 waveforms by Griffin-Lim."""
        import torch

        magnitude = (torch.exp(torch.as_tensor(log_magnitudes, dtype=torch.float32)[:, 0]) - FLOOR).clamp_(min=0)
        window = torch.hann_window(self.n_fft)
        generator = torch.Generator().manual_seed(seed)
        phase = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=generator))
        for _ in range(iterations):
            wave = torch.istft(magnitude * phase, self.n_fft, self.hop_length, window=window, length=self.samples)
            rebuilt = torch.stft(wave, self.n_fft, self.hop_length, window=window, center=True, return_complex=True)
            phase = rebuilt / rebuilt.abs().clamp(min=1e-8)
        wave = torch.istft(magnitude * phase, self.n_fft, self.hop_length, window=window, length=self.samples)
        return wave.clamp(-1, 1).numpy()
