"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing
generative models").

Each set of features approximates its manifold by the union of balls around its points, each ball reaching the
point's k-th nearest neighbour within the set (k = 3 by default). Precision is the fraction of generated points
inside the reference manifold (are samples realistic?); recall is the fraction of reference points inside the
generated manifold (is the data's variety covered?). A generator that collapses onto one mode keeps a high
precision and loses recall. Distances are computed in row chunks so memory stays `chunk x N`.
"""

from __future__ import annotations

import numpy as np
import torch


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 for rows of a (n, d) and b (m, d) -> (n, m), clamped at 0 against round-off."""
    return ((a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * a @ b.T).clamp_min_(0.0)


def knn_radii(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Squared distance from each row of x (N, d) to its k-th nearest other row: (N,)."""
    if not 0 < k < len(x):
        raise ValueError(f"k = {k} must lie in 1..{len(x) - 1} for {len(x)} points")
    radii = []
    for start in range(0, len(x), chunk):
        d2 = squared_distances(x[start : start + chunk], x)  # (c, N); includes each point itself at 0
        radii.append(d2.kthvalue(k + 1, dim=1).values)  # k+1: the point itself is the first
    return torch.cat(radii)


def coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Fraction of `points` inside at least one ball (centre_j, radius_j) (squared radii)."""
    inside = 0
    for start in range(0, len(points), chunk):
        d2 = squared_distances(points[start : start + chunk], centres)  # (c, M)
        inside += int((d2 <= radii[None, :]).any(dim=1).sum())
    return inside / len(points)


def precision_recall(
    ref: np.ndarray, gen: np.ndarray, k: int = 3, chunk: int = 1024, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Precision and recall of generated features `gen` (N, d) against reference features `ref` (M, d).

    Args:
        ref, gen: feature arrays (use equal sizes: the radii shrink as a set grows).
        k: the nearest neighbour that sets each ball's radius.
        chunk: rows per distance block.
        device: where distances are computed (float64).

    Returns:
        (precision, recall), fractions in [0, 1].
    """
    real = torch.as_tensor(ref, dtype=torch.float64, device=device)
    fake = torch.as_tensor(gen, dtype=torch.float64, device=device)
    precision = coverage(fake, real, knn_radii(real, k, chunk), chunk)
    recall = coverage(real, fake, knn_radii(fake, k, chunk), chunk)
    return precision, recall
