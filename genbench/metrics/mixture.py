"""Mode coverage on the toy 2-D mixtures, whose components are known (ring8: 8 modes, grid25: 25).

A sample is of high quality when it lies within 3 standard deviations of a mixture component's centre; a mode is
covered when at least `min_per_mode` samples do so for it. With the protocol of Lin et al. 2018 (PacGAN, grid25:
2,500 samples, a mode lost below 20 of them), after Metz et al. 2017 (unrolled GANs, ring8) and Srivastava et al.
2017 (VEEGAN), the two numbers tell mode collapse (few modes, high quality) from blur (many modes, low quality).

`coverage` is the pure core; `evaluate` is the family (eval section `mixture`), on the default mode's samples, for
data whose known density is a mixture of isotropic Gaussians (it has `centers` and `sigma`).
"""

from __future__ import annotations

from typing import Any

import torch

from genbench.metrics.context import EvalContext
from genbench.results import Metric

WITHIN_SIGMAS = 3.0


def mode_counts(points: torch.Tensor, centers: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per mixture component, how many of `points (N, 2)` lie within 3 sigma of it (the nearest centre), shape (K,)."""
    dist = torch.cdist(points.double(), centers.double())  # (N, K)
    nearest, which = dist.min(dim=1)
    return torch.bincount(which[nearest <= WITHIN_SIGMAS * sigma], minlength=len(centers))


def coverage(points: torch.Tensor, centers: torch.Tensor, sigma: float, min_per_mode: int) -> tuple[int, float]:
    """(modes covered, fraction of high-quality points) of `points (N, 2)` for mixture `centers (K, 2)`."""
    per_mode = mode_counts(points, centers, sigma)
    return int((per_mode >= min_per_mode).sum()), int(per_mode.sum()) / len(points)


def has_components(density: Any) -> bool:
    return density is not None and hasattr(density, "centers") and hasattr(density, "sigma")


def coverage_metrics(points: torch.Tensor, density: Any, min_per_mode: int, extra: dict[str, Any]) -> list[Metric]:
    """`modes_covered` (count, and which: `covered`, the components' indices) and `high_quality_fraction` of
    `points`, carrying `extra` (variant: its keys). Which modes matter over training: a count that holds while
    the covered set changes is mode hopping."""
    per_mode = mode_counts(points, density.centers, density.sigma)
    covered = torch.nonzero(per_mode >= min_per_mode).flatten().tolist()
    quality = int(per_mode.sum()) / len(points)
    rule = {"modes": len(density.centers), "within_sigmas": WITHIN_SIGMAS, "min_per_mode": min_per_mode, **extra}
    variant = tuple(extra)
    n = len(points)
    which = {**rule, "covered": covered}
    return [
        Metric("modes_covered", float(len(covered)), "modes", "estimate", None, n, "samples", which, variant),
        Metric("high_quality_fraction", quality, "fraction", "estimate", None, n, "samples", dict(rule), variant),
    ]


def evaluate(ctx: EvalContext) -> list[Metric]:
    """Modes covered and high-quality fraction of the default mode's samples (toy mixtures only)."""
    cfg = ctx.cfg.get("mixture") or {}
    if not cfg.get("enabled", True) or not has_components(ctx.data.density):
        return []
    points = ctx.samples(int(cfg.get("n_samples", 2500)))
    return coverage_metrics(points, ctx.data.density, int(cfg.get("min_per_mode", 20)), {"mode": ctx.default_mode})
