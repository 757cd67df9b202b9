"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

KID is the squared maximum mean discrepancy between generated and reference features under the cubic
polynomial kernel `k(x, y) = (x.y / d + 1)^3`, estimated without bias on random subsets; we report the mean
and standard deviation over subsets, as the paper does. Unlike FID it has an unbiased estimator, so its value
does not drift with the number of samples, and two samples of one distribution give about zero.
"""

from __future__ import annotations

import numpy as np
import torch


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`(x.y / d + 1)^3` for every pair of rows: (n, d), (m, d) -> (n, m)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 of two equal-sized samples (m, d): the diagonals k(x_i, x_i) are left out of the within terms."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(
    gen: np.ndarray,
    ref: np.ndarray,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """KID of generated features `gen` (N, d) against reference features `ref` (M, d).

    Args:
        gen, ref: feature arrays; each subset draws `subset_size` rows of each without replacement.
        n_subsets: number of random subsets.
        subset_size: rows per subset (at most min(N, M)).
        seed: seeds the subset draws, so a run is reproducible.
        device: where the kernel matrices are computed (float64).

    Returns:
        Mean and standard deviation of the unbiased MMD^2 over the subsets.
    """
    m = min(subset_size, len(gen), len(ref))
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 rows; got subset_size {subset_size}, {len(gen)}, {len(ref)}")
    x_all = torch.as_tensor(gen, dtype=torch.float64, device=device)
    y_all = torch.as_tensor(ref, dtype=torch.float64, device=device)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_subsets):
        ix = torch.from_numpy(rng.choice(len(gen), m, replace=False)).to(device)
        iy = torch.from_numpy(rng.choice(len(ref), m, replace=False)).to(device)
        values.append(mmd2_unbiased(x_all[ix], y_all[iy]))
    return float(np.mean(values)), float(np.std(values, ddof=1)) if n_subsets > 1 else 0.0
