"""vaekit: the variational auto-encoder of the derivation, made into a toolkit for real data.

    import vaekit
    run = vaekit.train(vaekit.RunConfig(), "runs/digits")   # the embedded 8x8 digits
    images = run.sample(16)

Names are imported on first use, so `import vaekit` stays cheap (the CLI's --help needs no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "vaekit.config",
    "DataConfig": "vaekit.config",
    "ModelConfig": "vaekit.config",
    "TrainConfig": "vaekit.config",
    "load_toml": "vaekit.config",
    "UserError": "vaekit.errors",
    "VAE": "vaekit.model.vae",
    "train": "vaekit.api",
    "TrainedVAE": "vaekit.runs.trained",
    "load_data": "vaekit.data.loading",
}

__all__ = ["__version__", *_EXPORTS]


def __dir__() -> list[str]:
    """The lazy names too, for dir() and tab completion, though none is imported yet."""
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
