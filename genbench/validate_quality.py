"""The sample-quality cases of `genbench validate`: the Fréchet distance, KID and precision/recall cores (the
functions the FID metric family calls) against closed forms.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg

from genbench.metrics.frechet import frechet_distance, statistics
from genbench.metrics.kid import kid
from genbench.metrics.precision_recall import precision_recall
from genbench.validate_likelihood import Check, timed

# ----------------------------------------------------------------------------- sample-quality cores


def random_gaussian(dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    mix = rng.standard_normal((dim, dim)) / math.sqrt(dim)
    return rng.standard_normal(dim), mix @ mix.T + 0.1 * np.eye(dim)


def frechet_cases(sizes: Any) -> list[Check]:
    """The Fréchet distance of two Gaussians: the core on exact moments, and FID's plug-in from samples."""
    rows: list[Check] = []
    rng = np.random.default_rng(10)
    (mu1, s1), (mu2, s2) = random_gaussian(16, rng), random_gaussian(16, rng)
    root = scipy.linalg.sqrtm(s1).real
    truth = float(
        ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(root @ s2 @ root).real)
    )
    with timed(rows):
        value = frechet_distance(mu1, s1, mu2, s2)
        rows.append(
            Check(
                "frechet_distance",
                "exact moments, d=16, non-commuting",
                truth,
                value,
                0.0,
                "|error| <= 1e-8 x truth",
                abs(value - truth) <= 1e-8 * truth,
            )
        )
    with timed(rows):
        n, repeats = int(sizes.fid_samples), 5
        values = []
        for _ in range(repeats):
            a = rng.multivariate_normal(mu1, s1, n)
            b = rng.multivariate_normal(mu2, s2, n)
            values.append(frechet_distance(*statistics(a), *statistics(b)))
        est, se = float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(repeats))
        bias = 2 * (np.trace(s1) + np.trace(s2)) * 16 / n  # the plug-in's O(d / n) upward bias, generously
        rows.append(
            Check(
                "fid (plug-in)",
                f"{n} samples each, d=16, {repeats} repeats",
                truth,
                est,
                se,
                f"-4 se <= error <= 4 se + {bias:.3g}",
                -4 * se <= est - truth <= 4 * se + bias,
            )
        )
    return rows


def moment_tensors(mu: np.ndarray, cov: np.ndarray) -> list[np.ndarray]:
    """E[x], E[x x], E[x x x] of N(mu, cov) (Isserlis)."""
    m3 = np.einsum("a,b,c->abc", mu, mu, mu)
    m3 = m3 + np.einsum("a,bc->abc", mu, cov) + np.einsum("b,ac->abc", mu, cov) + np.einsum("c,ab->abc", mu, cov)
    return [mu, cov + np.outer(mu, mu), m3]


def population_mmd2(p: tuple[np.ndarray, np.ndarray], q: tuple[np.ndarray, np.ndarray]) -> float:
    """MMD^2 of two Gaussians under KID's kernel `(x.y / d + 1)^3`, exactly: `E (x.y)^j = <M_j(P), M_j(Q)>`."""
    dim = len(p[0])

    def expected_kernel(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return 1.0 + sum(math.comb(3, j) * float((a[j - 1] * b[j - 1]).sum()) / dim**j for j in (1, 2, 3))

    mp, mq = moment_tensors(*p), moment_tensors(*q)
    return expected_kernel(mp, mp) + expected_kernel(mq, mq) - 2 * expected_kernel(mp, mq)


def kid_case(sizes: Any) -> list[Check]:
    rows: list[Check] = []
    with timed(rows):
        rng = np.random.default_rng(11)
        dim = 8
        p = (np.zeros(dim), np.eye(dim))
        q = (np.full(dim, 0.3), np.diag(np.linspace(0.5, 1.5, dim)))
        truth = population_mmd2(p, q)
        subsets, size = int(sizes.kid_subsets), int(sizes.kid_subset_size)
        pool = subsets * size  # each subset draws rows without replacement from a pool this large
        a, b = rng.multivariate_normal(*p, pool), rng.multivariate_normal(*q, pool)
        mean, std = kid(b, a, n_subsets=subsets, subset_size=size, seed=12)
        se = std / math.sqrt(subsets)
        rows.append(
            Check(
                "kid",
                f"N(0, I) vs N(0.3, diag 0.5..1.5), d=8, {subsets} x {size}",
                truth,
                mean,
                se,
                "|error| <= 4 se",
                abs(mean - truth) <= 4 * se,
            )
        )
    return rows


def precision_recall_case(sizes: Any) -> list[Check]:
    """Supports of known overlap: reference U([0,1]^2), generated U([0.25,1.25] x [0,0.5]).

    Precision is the share of the generated support inside the reference one (3/4), recall the reverse (3/8).
    """
    rows: list[Check] = []
    with timed(rows):
        n = int(sizes.pr_samples)
        rng = np.random.default_rng(13)
        ref = rng.uniform(0, 1, (n, 2))
        gen = rng.uniform(0, 1, (n, 2)) * np.array([1.0, 0.5]) + np.array([0.25, 0.0])
        precision, recall = precision_recall(ref, gen, k=3)
        tol = float(sizes.pr_tolerance)
        for name, truth, value in (("precision", 0.75, precision), ("recall", 0.375, recall)):
            se = math.sqrt(truth * (1 - truth) / n)
            rows.append(
                Check(
                    name,
                    f"k=3, {n} points each, known overlap",
                    truth,
                    value,
                    se,
                    f"|error| <= {tol:g}",
                    abs(value - truth) <= tol,
                )
            )
    return rows
