"""Data sources: each reader turns a source into `RawData`; `load_data` (vaekit.data.loading) is the one
way in, for data in memory and streamed alike. This module only hands names on, each imported on first
use (as `vaekit` does), so that importing one light module of data/ (codec.py, say) loads no torch."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "vaekit.data.batch",
    **dict.fromkeys(("Codec", "IdentityCodec", "PixelCodec", "StandardizeCodec", "codec_from_dict"),
                    "vaekit.data.codec"),
    **dict.fromkeys(("READERS", "detect_format", "load_data", "read_source"), "vaekit.data.loading"),
    **dict.fromkeys(("ARRAY", "IMAGE", "TABLE", "RawData", "Split", "Splits", "split_source"), "vaekit.data.source"),
}

__all__ = [
    "ARRAY", "IMAGE", "TABLE", "Batch", "Codec", "IdentityCodec", "PixelCodec", "RawData", "READERS", "Split",
    "Splits", "StandardizeCodec", "codec_from_dict", "detect_format", "load_data", "read_source", "split_source",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vaekit.data' has no attribute {name!r}")
