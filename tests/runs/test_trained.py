"""runs/trained.py: a TrainedVAE takes data in its run's units, and says which where it is given others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vaekit.errors import UserError
from vaekit.runs.trained import TrainedVAE, check_units


@pytest.fixture(scope="module")
def digits(digits_run: Path) -> TrainedVAE:
    return TrainedVAE(digits_run)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1 / 255, 1.0])  # values in [0, 1], and floats of 0..255 alike
def test_an_image_run_refuses_floats_saying_it_takes_uint8_pixels(digits: TrainedVAE, dtype, scale: float):
    pixels = digits.sample(4)
    floats = pixels.astype(dtype) * scale
    for method in (digits.encode, digits.reconstruct, digits.kl_per_dimension):
        with pytest.raises(UserError, match=r"takes images as uint8 pixels 0\.\.255.*not float"):
            method(floats)
    with pytest.raises(UserError, match=r"pass \(x \* 255\)\.round\(\)\.astype\(np\.uint8\)"):
        digits.interpolate(floats[:1], floats[1:2])


def test_an_image_run_takes_uint8_pixels_and_integers_within_0_to_255_alike(digits: TrainedVAE):
    pixels = digits.sample(4)
    assert np.array_equal(digits.reconstruct(pixels.astype(np.int64)), digits.reconstruct(pixels))
    wrong = pixels.astype(np.int64)
    wrong[0, 0, 0, 0], wrong[1, 0, 0, 0] = -1, 300
    with pytest.raises(UserError, match="not int64 values from -1 to 300"):
        digits.encode(wrong)


def test_a_table_run_refuses_values_that_are_not_finite(table_run: Path):
    run = TrainedVAE(table_run)
    x, _ = run.load_inputs()
    run.encode(x.astype(np.float64))  # its own units, at any float precision
    x = x.copy()
    x[0, 1], x[2, 0] = np.nan, np.inf
    with pytest.raises(UserError, match="2 of the .* values given are NaN or infinite"):
        run.reconstruct(x)


def test_check_units_refuses_what_is_not_a_number():
    with pytest.raises(UserError, match="takes numbers in the units of its data, not <U1 values"):
        check_units(np.array([["a", "b"]]), pixels=False)
    with pytest.raises(UserError, match="not bool values"):
        check_units(np.zeros((1, 4), bool), pixels=True)
