"""KID: the unbiased MMD^2 against a brute-force double sum, ~0 for one distribution, > 0 for two."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from genbench.metrics.kid import kid, mmd2_unbiased, polynomial_kernel


def test_kernel_is_cubic_polynomial() -> None:
    x, y = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([[3.0, -1.0]], dtype=torch.float64)
    assert float(polynomial_kernel(x, y)) == pytest.approx(((1 * 3 + 2 * -1) / 2 + 1) ** 3)


def test_mmd2_unbiased_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)) + 0.3

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 3 + 1) ** 3

    m = 5
    pairs = [(i, j) for i, j in itertools.product(range(m), repeat=2) if i != j]
    expected = (
        sum(k(x[i], x[j]) for i, j in pairs) / (m * (m - 1))
        + sum(k(y[i], y[j]) for i, j in pairs) / (m * (m - 1))
        - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    )
    assert mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, rel=1e-12)


def test_kid_near_zero_for_one_distribution_positive_for_two() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    shifted = rng.standard_normal((2000, 16)) + 0.5
    same_mean, same_std = kid(a, b, n_subsets=20, subset_size=500, seed=0)
    diff_mean, diff_std = kid(a, shifted, n_subsets=20, subset_size=500, seed=0)
    assert abs(same_mean) < 3 * same_std  # unbiased: zero within its spread
    assert diff_mean > 10 * diff_std and diff_mean > 100 * abs(same_mean)


def test_kid_subsets_reproducible_and_capped() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((30, 4))
    assert kid(a, b, 4, 1000, seed=3) == kid(a, b, 4, 1000, seed=3)  # subset size capped at 30
    with pytest.raises(ValueError, match="at least 2"):
        kid(a[:1], b, 2, 10)
