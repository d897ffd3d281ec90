"""training/schedules.py: the KL warm-up and the cosine step size as functions of the step alone."""

from __future__ import annotations

import math

import pytest

from vaekit.config import TrainConfig
from vaekit.training.schedules import Schedules, beta_at, learning_rate_at


def test_beta_rises_linearly_over_the_warm_up_and_stays():
    assert [beta_at(step, 0.5, 4) for step in range(6)] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    assert beta_at(0, 0.7, 0) == 0.7


def test_the_cosine_falls_from_the_rate_to_zero_over_the_budget():
    assert learning_rate_at(0, 1e-3, "cosine", 100) == 1e-3
    assert learning_rate_at(50, 1e-3, "cosine", 100) == pytest.approx(5e-4)
    assert learning_rate_at(100, 1e-3, "cosine", 100) == pytest.approx(0.0, abs=1e-18)
    assert learning_rate_at(150, 1e-3, "cosine", 100) == learning_rate_at(100, 1e-3, "cosine", 100)
    assert learning_rate_at(37, 1e-3, "constant", 100) == 1e-3


def test_a_run_s_schedules_count_in_its_epochs_of_steps():
    schedules = Schedules(
        TrainConfig(epochs=4, warmup_epochs=2, beta=1.0, learning_rate=2e-3, lr_schedule="cosine"), 10
    )
    assert schedules.beta(10) == 0.5 and schedules.beta(20) == 1.0
    assert schedules.learning_rate(20) == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi / 2)))
