"""Likelihood baselines, computed by the suite on the same test split as every model: the floor and the ceiling
a reader needs to judge a bits/dim number.

* `uniform`: every level equally likely, exactly `log2 L` bits/dim (no fit).
* `independent categorical`: each dimension's level frequencies on the training split (add-one smoothed), the
  dimensions independent: the best model that ignores every correlation between pixels.
* `gaussian`: one full-covariance Gaussian fitted to the dequantized training split, scored on dequantized test
  points: an exact density of dequantized data, so on the discrete data a bound (Jensen), like a flow's.
* on binarized data (where some model is scored on a binarization): `uniform` (1 bit/dim) and an independent
  `bernoulli`, on the same fixed binarization the models see.
* toy 2-D data: the `gaussian` only, in nats (its KL to the truth shows how far a one-mode fit is).

Every baseline is an exact likelihood of a simple model fitted in seconds; its metrics carry `source: baseline`,
and the report shows each as a row of its own, never as a model.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genbench.data import binarize, dequantize, to_levels
from genbench.metrics.context import EvalContext
from genbench.metrics.likelihood import nll_metrics
from genbench.metrics.likelihood_inputs import BINARIZE_SEED, DEQUANTIZE_SEED
from genbench.results import Metric

RIDGE = 1e-6  # added to the Gaussian's covariance diagonal: constant pixels (digits' borders) have zero variance


def categorical_log_prob(train_k: torch.Tensor, test_k: torch.Tensor, levels: int) -> torch.Tensor:
    """`sum_d log P_d(k_d)` per test row under per-dimension add-one-smoothed frequencies; `(N, D)` -> `(N,)`."""
    counts = torch.zeros(train_k.shape[1], levels, dtype=torch.float64)
    counts.scatter_add_(1, train_k.T.contiguous(), torch.ones_like(train_k.T, dtype=torch.float64))  # (D, L)
    log_p = torch.log((counts + 1.0) / (len(train_k) + levels))  # (D, L)
    return log_p.gather(1, test_k.T.contiguous()).sum(0)  # (N,)


def gaussian_log_density(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Log density of a full-covariance Gaussian fitted (maximum likelihood) to `train` `(M, D)`, at `test` rows."""
    train, test = train.double(), test.double()
    mean = train.mean(0)
    cov = torch.cov(train.T, correction=0).reshape(train.shape[1], train.shape[1])
    cov = cov + RIDGE * torch.eye(len(mean), dtype=torch.float64)
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(test)


def baseline_metrics(log_prob: torch.Tensor, dim: int, levels: int | None, method: str, extra: dict) -> list[Metric]:
    fields = {"source": "baseline", **extra}
    kind = "exact"
    metrics = nll_metrics(log_prob, dim, levels, kind, method, fields)
    for m in metrics:
        m.variant = ("method", "data", "source")
    return metrics


def evaluate(ctx: EvalContext) -> list[Metric]:
    """Every baseline that applies to the data (eval section `baselines`), on the whole test split."""
    cfg = ctx.cfg.get("baselines") or {}
    if not cfg.get("enabled", True):
        return []
    data = ctx.data
    train, test, levels, dim = data.train.flatten(1), data.test.flatten(1), data.spec.levels, data.spec.dim
    fitted = {"fitted_on": "train", "n_fit": len(train)}
    if levels is None:  # continuous toy data: the one-Gaussian fit
        return baseline_metrics(gaussian_log_density(train, test), dim, None, "gaussian", fitted)
    discrete: dict[str, Any] = {"data": "discrete", "dequantized": False}
    metrics = baseline_metrics(torch.zeros(len(test), dtype=torch.float64), dim, levels, "uniform", discrete)
    log_p = categorical_log_prob(to_levels(train, levels), to_levels(test, levels), levels) + dim * math.log(levels)
    metrics += baseline_metrics(log_p, dim, levels, "independent categorical", {**discrete, **fitted})
    gen = torch.Generator().manual_seed(DEQUANTIZE_SEED)
    train_y, test_y = dequantize(train, levels, gen), dequantize(test, levels, gen)
    deq = {"data": "discrete", "dequantized": True, **fitted}
    metrics += baseline_metrics(gaussian_log_density(train_y, test_y), dim, levels, "gaussian", deq)
    if ctx.model.data_variant == "binarized":  # the variant this run's model is scored on
        bits = {"data": "binarized", "dequantized": False}
        binarized_test = binarize(test, torch.Generator().manual_seed(BINARIZE_SEED))
        binarized_train = binarize(train, torch.Generator().manual_seed(BINARIZE_SEED + 1))
        zeros = torch.zeros(len(test), dtype=torch.float64)
        metrics += baseline_metrics(zeros, dim, 2, "uniform", bits)
        log_b = categorical_log_prob(binarized_train.long(), binarized_test.long(), 2) + dim * math.log(2)
        metrics += baseline_metrics(log_b, dim, 2, "bernoulli", {**bits, **fitted})
    return metrics
