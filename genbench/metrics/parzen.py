"""Parzen-window (Gaussian kernel density) estimates: the pure core of the `parzen` and `kde` methods.

Goodfellow et al. 2014 ("Generative Adversarial Nets") scored sample-only models by fitting Gaussian
kernels on generated samples, with the bandwidth chosen on validation data (after Breuleux, Bengio,
Vincent 2011). Theis, van den Oord, Bethge 2016 ("A note on the evaluation of generative models") show
the estimate can be far from the likelihood in high dimension, so it is always labelled `estimate`.
"""

from __future__ import annotations

import math

import torch


def parzen_log_density(x: torch.Tensor, centers: torch.Tensor, bandwidth: float, batch: int = 256) -> torch.Tensor:
    """Log density of an isotropic Gaussian kernel density estimate, per row of `x`.

    `log p(x) = logsumexp_i(-|x - c_i|^2 / 2h^2) - log M - (D/2) log(2 pi h^2)`, computed `batch` rows
    at a time in float64 so memory stays `O(batch x M)`.

    Args:
        x: query points `(N, D)`.
        centers: kernel centres `(M, D)` (the model's samples).
        bandwidth: kernel standard deviation `h`.
        batch: query rows per block.

    Returns:
        Log densities `(N,)`, float64 on the CPU.
    """
    centers = centers.double()
    m, dim = centers.shape
    norm = math.log(m) + 0.5 * dim * math.log(2 * math.pi * bandwidth**2)
    c_sq = (centers**2).sum(1)  # (M,)
    out = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch].to(centers.device).double()
        sq = (xb**2).sum(1, keepdim=True) + c_sq[None] - 2 * xb @ centers.T  # (b, M) squared distances
        out.append((torch.logsumexp(-sq.clamp_min(0) / (2 * bandwidth**2), dim=1) - norm).cpu())
    return torch.cat(out)


def choose_bandwidth(valid: torch.Tensor, centers: torch.Tensor, grid: list[float]) -> tuple[float, dict[str, float]]:
    """The bandwidth in `grid` with the highest mean log density on `valid` (Goodfellow et al. 2014).

    Returns:
        The chosen bandwidth and the mean validation log density of every candidate.
    """
    scores = {str(h): float(parzen_log_density(valid, centers, float(h)).mean()) for h in grid}
    best = max(grid, key=lambda h: scores[str(h)])
    return float(best), scores
