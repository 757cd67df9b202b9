"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

KID is the squared maximum mean discrepancy between generated and reference features under the cubic
polynomial kernel `k(x, y) = (x.y / d + 1)^3`, estimated without bias on random subsets; we report the mean
and standard deviation over subsets, as the paper does. Unlike FID it has an unbiased estimator, so its value
does not drift with the number of samples, and two samples of one distribution give about zero.

Speed: every subset's kernel sums are read from the three Gram matrices (generated-generated, reference-
reference, cross) computed once, in tiles. With a subset written as a 0/1 column s, the sum of a Gram matrix K
over the subset is s^T K s, so all subsets at once are the diagonal of S^T K S for the indicator matrix S
(N x subsets): one pass over K's tiles, each multiplied by a slice of S, and no Gram matrix is ever held whole.
The within-set Gram matrices are symmetric, so only their upper tiles are computed and multiplied. The cost no
longer grows with the number of subsets (100 subsets of 1000 from 3000 evaluate each kernel entry about 11
times per subset loop, once here); when the subsets are few and the sets large, the per-subset loop is cheaper
and is used instead. Both give the same values to round-off.

Precision: float64 kernels by default, equal to the per-subset float64 loop to ~1e-15. On a CPU, float64
matrix products run at about a third of float32's rate and the Gram matrices are the whole cost at 2048-d, so
`precision="float32"` (the features' own precision, and torch-fidelity's) computes the tiles and their
products with S in float32 and every sum over tiles and rows in float64: ~2x faster, and in
results/benchmarks/metrics_vs_peers.json 9e-11 from the float64 value at 64-d (KID 0.10) and 8e-10 at 2048-d
(KID 0.010), about 1e-7 of the value: far inside KID's spread over subsets, but not the 1e-15 of float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TILE = 512  # rows and columns of one Gram tile (2 MiB in float64; smaller tiles leave less of the symmetric
# Gram matrices on diagonal tiles, which are computed whole: 512 measured ~1.2x faster than 1024 at 64-d)
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`(x.y / d + 1)^3` for every pair of rows: (n, d), (m, d) -> (n, m)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _kernel_tile(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`polynomial_kernel` with the same rounding, in place (no temporaries: this is the hot loop)."""
    return (x @ y.T).div_(x.shape[1]).add_(1.0).pow_(3)


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 of two equal-sized samples (m, d): the diagonals k(x_i, x_i) are left out of the within terms."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


@dataclass(frozen=True)
class KidResult:
    """KID over random subsets: the mean and standard deviation (ddof 1) of the per-subset unbiased MMD^2."""

    mean: float
    std: float
    subset_size: int  # rows of each set per subset actually used: min(requested, n_gen, n_ref)
    values: np.ndarray  # (n_subsets,) the per-subset MMD^2

    @property
    def n_subsets(self) -> int:
        return len(self.values)


def kid_subset_size(requested: int, n_gen: int, n_ref: int) -> int:
    """The subset size KID uses: the requested one, capped by both set sizes."""
    return min(int(requested), int(n_gen), int(n_ref))


def draw_subsets(n_gen: int, n_ref: int, n_subsets: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (n_subsets, m) of each subset, drawn without replacement inside a subset, generated and
    reference draws alternating per subset (the order every genbench version has used, so values reproduce)."""
    rng = np.random.default_rng(seed)
    gen_rows, ref_rows = np.empty((n_subsets, m), np.int64), np.empty((n_subsets, m), np.int64)
    for s in range(n_subsets):
        gen_rows[s] = rng.choice(n_gen, m, replace=False)
        ref_rows[s] = rng.choice(n_ref, m, replace=False)
    return gen_rows, ref_rows


def _indicator(rows: np.ndarray, n: int, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(n, subsets) matrix with a 1 where row i belongs to subset s."""
    s = torch.zeros(n, len(rows), dtype=dtype, device=device)
    s[torch.from_numpy(rows).to(device), torch.arange(len(rows), device=device)[:, None]] = 1.0
    return s


def _within_sums(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per subset, the sum of k(x_i, x_j) over pairs i != j inside it: diag(S^T K S) - diag(K).S, (subsets,).

    K is symmetric, so only tiles on and above the diagonal are computed, and an off-diagonal tile K_IJ
    contributes s_I^T K_IJ s_J twice (once for K_JI): one product with a slice of S per tile. The tiles' sums
    are accumulated in float64 whatever the kernels' precision (`x.dtype`).
    """
    n = len(x)
    total = torch.zeros(s.shape[1], dtype=torch.float64, device=x.device)
    for i in range(0, n, TILE):
        s_i = s[i : i + TILE]
        for j in range(i, n, TILE):
            k = _kernel_tile(x[i : i + TILE], x[j : j + TILE])
            pair_sums = ((k @ s[j : j + TILE]) * s_i).sum(0, dtype=torch.float64)  # s_I^T K_IJ s_J per subset
            if j == i:
                total += pair_sums - (k.diagonal().to(torch.float64) @ s_i.to(torch.float64))
            else:
                total += 2.0 * pair_sums
    return total


def _cross_sums(x: torch.Tensor, y: torch.Tensor, s_x: torch.Tensor, s_y: torch.Tensor) -> torch.Tensor:
    """Per subset, the sum of k(x_i, y_j) over the subset's pairs: diag(S_x^T K_xy S_y), (subsets,), in float64."""
    total = torch.zeros(s_x.shape[1], dtype=torch.float64, device=x.device)
    for i in range(0, len(x), TILE):
        for j in range(0, len(y), TILE):
            k = _kernel_tile(x[i : i + TILE], y[j : j + TILE])
            total += ((k @ s_y[j : j + TILE]) * s_x[i : i + TILE]).sum(0, dtype=torch.float64)
    return total


def gram_route_is_cheaper(n_gen: int, n_ref: int, d: int, n_subsets: int, m: int) -> bool:
    """Multiply-adds: the Gram route evaluates every pair once (symmetric halves) and multiplies each tile by a
    slice of S (symmetric halves again); the per-subset loop evaluates three m x m kernels per subset. Pick the
    smaller."""
    pairs = (n_gen * n_gen + n_ref * n_ref) / 2 + n_gen * n_ref
    return pairs * (d + n_subsets) <= n_subsets * 3 * m * m * d


def subset_mmd2(
    gen: np.ndarray,
    ref: np.ndarray,
    gen_rows: np.ndarray,
    ref_rows: np.ndarray,
    device: str | torch.device = "cpu",
    precision: str = "float64",
) -> np.ndarray:
    """The unbiased MMD^2 of each subset pair (gen[gen_rows[s]], ref[ref_rows[s]]).

    Args:
        gen, ref: feature arrays (N, d) and (M, d).
        gen_rows, ref_rows: (subsets, m) row indices, distinct within a row (m >= 2).
        device: where the kernels are computed.
        precision: `float64` (exact to round-off) or `float32`: the kernel tiles and their products with the
            subset indicators in float32 (the precision of the features and of torch-fidelity), every sum over
            tiles and rows in float64.

    Returns:
        (subsets,) float64 values, equal to `mmd2_unbiased` on each subset up to round-off.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"KID precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    dtype = PRECISIONS[precision]
    gen_rows, ref_rows = np.atleast_2d(gen_rows), np.atleast_2d(ref_rows)
    (n_subsets, m), (n, d) = gen_rows.shape, np.shape(gen)
    if ref_rows.shape != gen_rows.shape or m < 2:
        raise ValueError(f"subset indices must share a shape (subsets, m >= 2): {gen_rows.shape}, {ref_rows.shape}")
    x = torch.as_tensor(gen, dtype=dtype, device=device)
    y = torch.as_tensor(ref, dtype=dtype, device=device)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("KID: features contain NaN or inf")
    n_ref = len(y)
    if not gram_route_is_cheaper(n, n_ref, d, n_subsets, m):
        values = []
        for ix, iy in zip(gen_rows, ref_rows, strict=True):
            ix_t, iy_t = torch.from_numpy(ix).to(x.device), torch.from_numpy(iy).to(x.device)
            values.append(mmd2_unbiased(x[ix_t], y[iy_t]))
        return np.array(values)
    s_x, s_y = _indicator(gen_rows, n, x.device, dtype), _indicator(ref_rows, n_ref, x.device, dtype)
    within = (_within_sums(x, s_x) + _within_sums(y, s_y)) / (m * (m - 1))
    return (within - 2.0 * _cross_sums(x, y, s_x, s_y) / (m * m)).cpu().numpy()


def kid_estimate(
    gen: np.ndarray,
    ref: np.ndarray,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "float64",
) -> KidResult:
    """KID of generated features `gen` (N, d) against reference features `ref` (M, d), with its subset details.

    Args:
        gen, ref: feature arrays; each subset draws `subset_size` rows of each without replacement.
        n_subsets: number of random subsets.
        subset_size: rows per subset (capped at min(N, M); the result says what was used).
        seed: seeds the subset draws, so a run is reproducible.
        device: where the kernel matrices are computed.
        precision: `float64` (default, exact to round-off) or `float32` kernels (see `subset_mmd2`).

    Returns:
        A `KidResult`: mean and standard deviation of the unbiased MMD^2 over subsets, the subset size used,
        and the per-subset values.
    """
    m = kid_subset_size(subset_size, len(gen), len(ref))
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 rows; got subset_size {subset_size}, {len(gen)}, {len(ref)}")
    if n_subsets < 1:
        raise ValueError(f"KID needs at least one subset; got n_subsets {n_subsets}")
    gen_rows, ref_rows = draw_subsets(len(gen), len(ref), n_subsets, m, seed)
    values = subset_mmd2(gen, ref, gen_rows, ref_rows, device, precision)
    std = float(np.std(values, ddof=1)) if n_subsets > 1 else 0.0
    return KidResult(float(np.mean(values)), std, m, values)


def kid(
    gen: np.ndarray,
    ref: np.ndarray,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "float64",
) -> tuple[float, float]:
    """KID of `gen` against `ref`: (mean, std) over subsets; `kid_estimate` also returns the subset size used.

    Args and subsets as in `kid_estimate`.
    """
    result = kid_estimate(gen, ref, n_subsets, subset_size, seed, device, precision)
    return result.mean, result.std
