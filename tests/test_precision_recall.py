"""Improved precision and recall: hand-computed radii and fractions, identical sets, and mode collapse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.metrics.precision_recall import knn_radii, precision_recall


def test_knn_radii_brute_force_and_chunking() -> None:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((37, 5)))
    d2 = torch.cdist(x, x) ** 2
    expected = d2.sort(dim=1).values[:, 3]  # column 0 is the point itself
    torch.testing.assert_close(knn_radii(x, 3, chunk=1000), expected)
    torch.testing.assert_close(knn_radii(x, 3, chunk=4), expected)
    with pytest.raises(ValueError, match="k = 37"):
        knn_radii(x, 37)


def test_hand_example_1d() -> None:
    real = np.array([[0.0], [1.0], [2.0], [3.0]])  # k=1: every radius is 1
    gen = np.array([[0.5], [10.0]])  # 0.5 lies in a ball, 10 does not; gen's own radius is 9.5
    assert precision_recall(real, gen, k=1) == (0.5, 1.0)


def test_identical_sets_are_one_one() -> None:
    x = np.random.default_rng(1).standard_normal((300, 8))
    assert precision_recall(x, x.copy(), k=3, chunk=64) == (1.0, 1.0)


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
