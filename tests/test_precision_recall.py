"""Improved precision and recall: identical to float64 brute force (near-ties and duplicates included), hand
examples, supports of known overlap, and mode collapse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench.metrics.precision_recall import knn_radii, precision_recall


def squared_distances_64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def brute_force(ref: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float, torch.Tensor]:
    """Precision, recall and the reference radii from full float64 distance matrices (sum of squared differences)."""
    ref_t, gen_t = torch.as_tensor(ref).double(), torch.as_tensor(gen).double()
    r_ref = squared_distances_64(ref_t, ref_t).kthvalue(k + 1, dim=1).values  # k + 1: the point itself first
    r_gen = squared_distances_64(gen_t, gen_t).kthvalue(k + 1, dim=1).values
    cross = squared_distances_64(gen_t, ref_t)  # (N_gen, N_ref)
    precision = (cross <= r_ref[None, :]).any(1).double().mean()
    recall = (cross.T - r_gen[None, :] <= 0).any(1).double().mean()
    return float(precision), float(recall), r_ref


def naive_float32(ref: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    """What float32 `|a|^2 + |b|^2 - 2ab` without a re-check gives: the mutant the exact path must beat."""
    ref_t, gen_t = torch.as_tensor(ref).float(), torch.as_tensor(gen).float()

    def d2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)

    r_ref, r_gen = d2(ref_t, ref_t).kthvalue(k + 1, dim=1).values, d2(gen_t, gen_t).kthvalue(k + 1, dim=1).values
    cross = d2(gen_t, ref_t)
    return float((cross <= r_ref).any(1).double().mean()), float((cross.T - r_gen <= 0).any(1).double().mean())


def near_tie_sets(seed: int, n: int = 300, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Points on a dyadic lattice far from the origin (every float64 distance exact, so many exact ties), a
    third of the generated ones moved by 2^-20: below float32's resolution at |x| ~ 1000, far above float64's."""
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 4, (n, d)) / 4 + 1000.0
    gen = rng.integers(0, 4, (n, d)) / 4 + 1000.0 + (rng.random((n, 1)) < 0.3) * 2.0**-20
    return ref, gen


def test_knn_radii_brute_force_and_chunking() -> None:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((37, 5)))
    expected = squared_distances_64(x, x).sort(dim=1).values[:, 3]  # column 0 is the point itself
    assert torch.equal(knn_radii(x, 3, chunk=1000), expected)
    assert torch.equal(knn_radii(x, 3, chunk=4), expected)
    with pytest.raises(ValueError, match="k = 37"):
        knn_radii(x, 37)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identical_to_float64_brute_force_on_near_ties(seed: int) -> None:
    ref, gen = near_tie_sets(seed)
    precision, recall, r_ref = brute_force(ref, gen, k=3)
    assert precision_recall(ref, gen, k=3, chunk=64) == (precision, recall)
    assert torch.equal(knn_radii(torch.from_numpy(ref), 3, chunk=50), r_ref)
    if seed == 1:  # the data has teeth: without the float64 re-check the answer is wrong
        assert naive_float32(ref, gen, k=3) != (precision, recall)


@pytest.mark.parametrize(
    ("n_ref", "n_gen", "d", "k", "chunk", "dtype"),
    [
        (300, 280, 300, 3, 64, np.float32),  # high dimension: the symmetric (upper-triangle) k-NN strips
        (300, 280, 300, 5, None, np.float64),
        (200, 150, 2, 1, 17, np.float64),  # ragged blocks, k = 1
        (120, 120, 8, 4, None, np.float32),
    ],
)
def test_identical_to_float64_brute_force_on_gaussians(n_ref, n_gen, d, k, chunk, dtype) -> None:
    rng = np.random.default_rng(d + k)
    ref = rng.standard_normal((n_ref, d)).astype(dtype)
    gen = (rng.standard_normal((n_gen, d)) * 1.05 + 0.02).astype(dtype)
    precision, recall, r_ref = brute_force(ref, gen, k)
    assert precision_recall(ref, gen, k=k, chunk=chunk) == (precision, recall)
    assert torch.equal(knn_radii(torch.from_numpy(ref), k, chunk=chunk), r_ref)


def test_duplicates_and_a_constant_generator_match_brute_force() -> None:
    rng = np.random.default_rng(5)
    ref = rng.standard_normal((150, 10))
    ref[100:] = ref[:50]  # every third point has an exact twin
    constant = np.repeat(ref[:1], 80, axis=0)  # radius 0 everywhere: a ball is its centre
    near_copies = ref[rng.integers(0, 150, 120)] + 1e-9 * rng.standard_normal((120, 10))
    for gen in (constant, near_copies):
        precision, recall, _ = brute_force(ref, gen, 3)
        assert precision_recall(ref, gen, k=3, chunk=32) == (precision, recall)


def test_hand_example_1d() -> None:
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1: every radius is 1
    gen = np.array([[0.5], [10.0]])  # 0.5 lies in a ball, 10 does not; gen's own radius is 9.5
    assert precision_recall(real, gen, k=1) == (0.5, 1.0)


def test_supports_of_known_overlap() -> None:
    # Reference uniform on the unit square. A shifted square shares half of either support; a centred half-size
    # square lies inside the reference support and covers a quarter of it. Expected values: the overlap times the
    # coverage c of a k-NN manifold inside its own support (c < 1 from holes between the balls; scale-free, so
    # one same-distribution run measures it), up to sampling (binomial sd <= 0.5 / sqrt(n)) and balls reaching
    # about one k-NN radius past a support's edge (sqrt(k / (pi n)) at unit density: at most twice that band).
    n, k = 4000, 3
    rng = np.random.default_rng(6)
    ref, same = rng.random((n, 2)), rng.random((n, 2))
    shifted, inner = rng.random((n, 2)) + [0.5, 0.0], 0.25 + 0.5 * rng.random((n, 2))
    p_same, r_same = precision_recall(ref, same, k)
    tol = 4 * 0.5 / math.sqrt(n) + 2 * math.sqrt(k / (math.pi * n))
    assert 0.9 < p_same <= 1.0 and 0.9 < r_same <= 1.0
    p, r = precision_recall(ref, shifted, k)
    assert abs(p - 0.5 * p_same) < tol and abs(r - 0.5 * r_same) < tol
    p, r = precision_recall(ref, inner, k)
    assert abs(p - p_same) < tol and abs(r - 0.25 * r_same) < tol  # inside the data, but a quarter of it
    p, r = precision_recall(ref, rng.random((n, 2)) + [3.0, 0.0], k)
    assert (p, r) == (0.0, 0.0)  # disjoint supports, further apart than any ball


def test_mode_collapse_keeps_precision_drops_recall() -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((8, 10)) * 10
    real = centres[rng.integers(0, 8, 800)] + rng.standard_normal((800, 10))
    good = centres[rng.integers(0, 8, 800)] + rng.standard_normal((800, 10))
    collapsed = centres[0] + rng.standard_normal((800, 10))
    p_good, r_good = precision_recall(real, good, k=3, chunk=128)
    p_bad, r_bad = precision_recall(real, collapsed, k=3, chunk=128)
    assert p_good > 0.8 and r_good > 0.8
    assert p_bad > 0.8  # every collapsed sample still looks real
    assert r_bad < 0.25  # but only about one mode in eight is covered


def test_bad_input_is_refused() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        precision_recall(x, np.full((10, 3), np.inf))
    with pytest.raises(ValueError, match="one d"):
        precision_recall(x, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="k = 10"):
        precision_recall(x, x + 1.0, k=10)
