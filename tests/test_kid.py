"""KID: the unbiased MMD^2 against a brute-force double sum, the Gram route against today's per-subset loop on
the same subsets, ~0 for one distribution, > 0 for two."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from genbench.metrics import kid as kid_module
from genbench.metrics.kid import (
    draw_subsets,
    gram_route_is_cheaper,
    kid,
    kid_estimate,
    mmd2_unbiased,
    polynomial_kernel,
    subset_mmd2,
)


def reference_kid(gen: np.ndarray, ref: np.ndarray, n_subsets: int, subset_size: int, seed: int) -> np.ndarray:
    """The per-subset KID loop as genbench computed it before the Gram route (kept verbatim as the reference):
    the same draws, three float64 kernel matrices per subset. Returns the per-subset values."""
    m = min(subset_size, len(gen), len(ref))
    x_all, y_all = torch.as_tensor(gen, dtype=torch.float64), torch.as_tensor(ref, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_subsets):
        x = x_all[torch.from_numpy(rng.choice(len(gen), m, replace=False))]
        y = y_all[torch.from_numpy(rng.choice(len(ref), m, replace=False))]
        k_xx, k_yy = (x @ x.T / x.shape[1] + 1.0) ** 3, (y @ y.T / y.shape[1] + 1.0) ** 3
        k_xy = (x @ y.T / x.shape[1] + 1.0) ** 3
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        values.append(float(within - 2.0 * k_xy.mean()))
    return np.array(values)


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


@pytest.mark.parametrize(
    ("n_gen", "n_ref", "d", "n_subsets", "m", "tile"),
    [
        (300, 300, 16, 40, 200, 1024),  # one tile per Gram matrix
        (300, 230, 16, 40, 150, 64),  # ragged tiles, off-diagonal tiles used twice, unequal sets
        (120, 90, 5, 200, 1000, 32),  # subset size capped at 90: each subset takes all of ref
    ],
)
def test_gram_route_equals_todays_per_subset_loop(n_gen, n_ref, d, n_subsets, m, tile, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    gen = rng.standard_normal((n_gen, d)).astype(np.float32)
    ref = (rng.standard_normal((n_ref, d)) * 1.3 + 0.2).astype(np.float32)
    assert gram_route_is_cheaper(n_gen, n_ref, d, n_subsets, min(m, n_gen, n_ref))  # the route under test
    monkeypatch.setattr(kid_module, "TILE", tile)
    expected = reference_kid(gen, ref, n_subsets, m, seed=7)
    result = kid_estimate(gen, ref, n_subsets, m, seed=7)
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-10)
    assert result.mean == pytest.approx(expected.mean(), abs=1e-10)
    assert result.std == pytest.approx(expected.std(ddof=1), abs=1e-10)
    assert result.subset_size == min(m, n_gen, n_ref) and result.n_subsets == n_subsets
    assert kid(gen, ref, n_subsets, m, seed=7) == (result.mean, result.std)


def test_per_subset_route_is_taken_for_few_subsets_and_agrees() -> None:
    rng = np.random.default_rng(4)
    gen, ref = rng.standard_normal((400, 8)), rng.standard_normal((400, 8)) + 0.1
    gen_rows, ref_rows = draw_subsets(400, 400, 2, 50, seed=1)
    assert not gram_route_is_cheaper(400, 400, 8, 2, 50)
    loop = subset_mmd2(gen, ref, gen_rows, ref_rows)
    s_x = kid_module._indicator(gen_rows, 400, torch.device("cpu"))
    s_y = kid_module._indicator(ref_rows, 400, torch.device("cpu"))
    x, y = torch.from_numpy(gen), torch.from_numpy(ref)
    gram = (kid_module._within_sums(x, s_x) + kid_module._within_sums(y, s_y)) / (50 * 49)
    gram = gram - 2.0 * kid_module._cross_sums(x, y, s_x, s_y) / 50**2
    np.testing.assert_allclose(gram.numpy(), loop, rtol=0, atol=1e-12)
    np.testing.assert_allclose(loop, reference_kid(gen, ref, 2, 50, seed=1), rtol=0, atol=1e-12)


def test_kid_near_zero_for_one_distribution_positive_for_two() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    shifted = rng.standard_normal((2000, 16)) + 0.5
    same_mean, same_std = kid(a, b, n_subsets=20, subset_size=500, seed=0)
    diff_mean, diff_std = kid(a, shifted, n_subsets=20, subset_size=500, seed=0)
    assert abs(same_mean) < 3 * same_std  # unbiased: zero within its spread
    assert diff_mean > 10 * diff_std and diff_mean > 100 * abs(same_mean)


def test_kid_subsets_reproducible_capped_and_reported() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((30, 4))
    assert kid(a, b, 4, 1000, seed=3) == kid(a, b, 4, 1000, seed=3)
    assert kid(a, b, 4, 1000, seed=3) != kid(a, b, 4, 1000, seed=4)
    result = kid_estimate(a, b, 4, 1000, seed=3)
    assert result.subset_size == 30 and len(result.values) == 4  # capped at min(requested, n_gen, n_ref)
    gen_rows, ref_rows = draw_subsets(50, 30, 4, 30, seed=3)
    assert all(len(set(row)) == 30 for row in gen_rows) and all(sorted(row) == list(range(30)) for row in ref_rows)
    with pytest.raises(ValueError, match="at least 2"):
        kid(a[:1], b, 2, 10)
    with pytest.raises(ValueError, match="NaN or inf"):
        kid(np.full((10, 4), np.nan), b, 2, 5)


@pytest.mark.parametrize(("n_subsets", "m", "tile"), [(40, 200, 64), (2, 50, 1024)])  # Gram route, per-subset loop
def test_float32_kernels_within_round_off_of_float64(n_subsets, m, tile, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    gen = rng.standard_normal((300, 64)).astype(np.float32)
    ref = (rng.standard_normal((300, 64)) * 1.1 + 0.05).astype(np.float32)
    assert gram_route_is_cheaper(300, 300, 64, n_subsets, m) == (n_subsets == 40)
    monkeypatch.setattr(kid_module, "TILE", tile)
    exact = kid_estimate(gen, ref, n_subsets, m, seed=2).values
    fast = kid_estimate(gen, ref, n_subsets, m, seed=2, precision="float32").values
    np.testing.assert_allclose(exact, reference_kid(gen, ref, n_subsets, m, seed=2), rtol=0, atol=1e-10)
    # float32 kernels: round-off of ~1e-7 per kernel entry, averaged over the subset's pairs (KID here ~0.1)
    np.testing.assert_allclose(fast, exact, rtol=0, atol=1e-6)
    assert np.any(fast != exact)  # the float32 path really ran in float32
    with pytest.raises(ValueError, match="precision"):
        kid(gen, ref, 2, 10, precision="float16")
