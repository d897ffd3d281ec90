"""The run's random state: the generator of ε and dynamic binarization, and the global generators.

vaekit draws only from `noise` (and from torch's default generator when building the model); Python's
and NumPy's global generators are saved too, because code around vaekit may draw from them and a
resumed run should find them as the interrupted one left them. The data order is no state: epoch e
is a permutation seeded by (seed, e) (vaekit.training.data).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)
RESEED_STRIDE = 1_000_003  # a prime, so (seed, step) pairs give distinct seeds


class Randomness:
    def __init__(self, seed: int, device: torch.device):
        self.seed, self.device = seed, device
        self.noise = torch.Generator(device=device).manual_seed(seed)

    def generators(self) -> dict[str, torch.Generator]:
        """The generators a checkpoint stores, by name."""
        return {"noise": self.noise, "torch": torch.default_generator}

    def extra(self) -> dict[str, Any]:
        """What a checkpoint stores as JSON: the device of `noise` and the global generators' states."""
        kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
        numpy_state = [kind, keys.tolist(), position, has_gauss, cached_gauss]
        return {"noise_device": self.device.type, "global_random": {"python": random.getstate(), "numpy": numpy_state}}

    def restore(self, extra: dict[str, Any], states: dict[str, torch.Tensor], global_step: int, origin: Path) -> None:
        """Put back what `generators` and `extra` saved. Raises KeyError, TypeError or ValueError on a
        damaged file. A noise generator of another device type cannot take the saved state: it is
        reseeded by the step, and training goes on, but not bit for bit."""
        noise_device, saved = extra["noise_device"], extra["global_random"]
        torch.default_generator.set_state(states["torch"])
        version, python_state, gauss_next = saved["python"]
        random.setstate((version, tuple(python_state), gauss_next))
        kind, keys, position, has_gauss, cached_gauss = saved["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gauss))
        if noise_device == self.device.type:
            self.noise.set_state(states["noise"])
            return
        self.noise.manual_seed(self.seed * RESEED_STRIDE + global_step)
        logger.warning("%s: written on %s, resumed on %s: training continues, but not bit for bit as it would "
                       "have there", origin, noise_device, self.device.type)

    def renew_noise(self) -> None:
        """A fresh noise generator in the same state: a failed CUDA graph capture can leave the one registered
        with it unusable."""
        state = self.noise.get_state()
        self.noise = torch.Generator(device=self.device)
        self.noise.set_state(state)
