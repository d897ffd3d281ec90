"""scikit-learn's bundled 8x8 handwritten digits: the embedded default, no download ever."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from vaekit.data.source import IMAGE, RawData
from vaekit.errors import UserError

DIGITS_LEVELS = 16  # the digits hold counts 0..16 of set pixels in 4x4 blocks


def read_digits() -> RawData:
    """All 1,797 digits as (N, 1, 8, 8) uint8 pixels scaled to 0..255, labels 0..9."""
    # Read the CSV that scikit-learn ships without importing sklearn (over a second of imports).
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("digits: scikit-learn is not installed; `pip install scikit-learn` brings the digits")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    pixels = np.rint(table[:, :-1] * (255.0 / DIGITS_LEVELS)).astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = table[:, -1].astype(np.int64)
    return RawData(
        x=pixels,
        y=labels,
        kind=IMAGE,
        description="digits (scikit-learn's bundled 8x8 digits)",
        class_names=tuple(str(d) for d in range(10)),
    )
