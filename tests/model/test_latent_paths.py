"""model/latent_paths.py: interpolation paths, traversal sweeps and the manifold grid, in latent space."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.model.latent_paths import interpolation, manifold, traversal


def test_a_linear_path_runs_evenly_from_one_code_to_the_other():
    start, end = torch.tensor([[0.0, 2.0]]), torch.tensor([[4.0, -2.0]])
    path = interpolation(start, end, 5)
    assert path.shape == (1, 5, 2)
    torch.testing.assert_close(path[0], torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0], [3.0, -1.0], [4.0, -2.0]]))


def test_slerp_keeps_the_norm_between_codes_of_equal_norm_and_hits_both_ends():
    start, end = torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    path = interpolation(start, end, 7, "slerp")
    torch.testing.assert_close(path[0, 0], start[0])
    torch.testing.assert_close(path[0, -1], end[0])
    torch.testing.assert_close(path.norm(dim=-1), torch.full((1, 7), 3.0))
    middle = path[0, 3]
    assert middle[:2].tolist() == pytest.approx([3 / math.sqrt(2)] * 2, rel=1e-5)


def test_slerp_between_codes_of_the_same_direction_is_the_straight_line():
    start = torch.tensor([[1.0, 1.0]])
    torch.testing.assert_close(interpolation(start, 3 * start, 4, "slerp"), interpolation(start, 3 * start, 4))


def test_a_traversal_moves_one_dimension_per_row_by_its_scale():
    base, scales = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 0.5, 2.0])
    codes = traversal(base, scales, [2, 0], steps=3, span=3.0)
    assert codes.shape == (2, 3, 3)
    torch.testing.assert_close(codes[0, :, 2], torch.tensor([-4.0, 2.0, 8.0]))
    torch.testing.assert_close(codes[1, :, 0], torch.tensor([-2.5, 0.5, 3.5]))
    torch.testing.assert_close(codes[0, :, :2], base[:2].expand(3, 2))  # the others held


def test_the_manifold_grid_takes_equal_steps_of_the_prior_s_quantiles():
    codes = manifold(4, 5, (3, 1))
    assert codes.shape == (5, 5, 4)
    normal = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(normal.cdf(codes[0, :, 1]), torch.linspace(0.05, 0.95, 5))  # across: z1 rises
    torch.testing.assert_close(normal.cdf(codes[:, 0, 3]), torch.linspace(0.95, 0.05, 5))  # down: z3 falls
    assert (codes[:, :, [0, 2]] == 0).all()
