"""Likelihood metrics: exact, ELBO / IWAE-k, AIS with BDMC, Parzen window, KL to the true density.

Every number is reported in DESIGN.md's units (nats per example, and bits/dim for images) with its
kind (`exact`, `lower_bound`, `estimate`), its standard error over test examples, `n` and the split.
The evaluator asks the model what it can do (`model.likelihood`, `has_decoder`), never its name.

References:
    Burda, Grosse, Salakhutdinov 2016, "Importance Weighted Autoencoders" (IWAE-k).
    Wu, Burda, Salakhutdinov, Grosse 2017, "On the Quantitative Analysis of Decoder-Based Generative
        Models" (AIS with HMC for decoders, BDMC).
    Grosse, Ghahramani, Adams 2015, "Sandwiching the marginal likelihood using bidirectional Monte Carlo".
    Goodfellow et al. 2014, "Generative Adversarial Nets" (the Parzen-window protocol);
    Theis, van den Oord, Bethge 2016, "A note on the evaluation of generative models" (why it misleads).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from genbench.data import Dataset, binarize
from genbench.model import GenerativeModel
from genbench.results import Metric

BINARIZE_SEED = 0  # the fixed binarization of the test split that every binarized model is scored on


# ----------------------------------------------------------------------------- pure maths


def bits_per_dim(log_prob_nats: torch.Tensor, dim: int, levels: int) -> torch.Tensor:
    """Bits per dimension of a log density on `[0, 1]^D` (DESIGN.md, "Units").

    `bits/dim = -(log_prob - D log L) / (D ln 2)`: subtracting `D log L` turns the density of the
    piecewise-constant equivalent back into the log probability of the discrete levels.

    Args:
        log_prob_nats: per-example log density in nats, any shape.
        dim: number of dimensions `D` of one example.
        levels: number of discrete levels `L` per dimension.

    Returns:
        Bits per dimension, same shape as `log_prob_nats`.
    """
    return -(log_prob_nats - dim * math.log(levels)) / (dim * math.log(2.0))


def chunked_logmeanexp(fn: Callable[[int], torch.Tensor], k: int, chunk: int) -> torch.Tensor:
    """`log (1/k) sum_i exp(w_i)` over `k` log-weights drawn `chunk` at a time.

    Memory stays `O(chunk x B)` whatever `k`: a running log-sum-exp is kept instead of the full
    `(k, B)` tensor. The VAE's IWAE bound uses it too.

    Args:
        fn: `fn(n)` returns `n` fresh log-weights per example, shape `(n, B)`.
        k: total number of log-weights.
        chunk: the most log-weights requested from `fn` at once.

    Returns:
        Log-mean-exp per example, shape `(B,)`.
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"chunked_logmeanexp needs k >= 1 and chunk >= 1; got k={k}, chunk={chunk}")
    total: torch.Tensor | None = None
    done = 0
    while done < k:
        n = min(chunk, k - done)
        part = torch.logsumexp(fn(n), dim=0)  # (B,)
        total = part if total is None else torch.logaddexp(total, part)
        done += n
    return total - math.log(k)


def mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error `std / sqrt(n)` over examples (stderr 0 for a single example)."""
    values = values.double()
    n = values.numel()
    std = float(values.std()) if n > 1 else 0.0
    return float(values.mean()), std / math.sqrt(n)


# ----------------------------------------------------------------------------- records


def nll_metrics(
    log_probs: torch.Tensor, dim: int, levels: int | None, kind: str, method: str, extra: dict[str, Any] | None = None
) -> list[Metric]:
    """`nll_nats` (and `nll_bpd` for discrete data) from per-example log densities.

    Args:
        log_probs: per-example log densities in nats, shape `(N,)`.
        dim: dimensions per example.
        levels: discrete levels per dimension, or None for continuous (toy) data: then no bits/dim.
        kind: `exact`, `lower_bound` or `estimate`.
        method: `exact`, `elbo`, `iwae-<k>`, `ais`, `parzen`, ...
        extra: further fields for the record (same on both metrics).

    Returns:
        The metrics, nats first.
    """
    extra = {"method": method, **(extra or {})}
    n = log_probs.numel()
    mean, se = mean_stderr(-log_probs)
    metrics = [Metric("nll_nats", mean, "nats/example", kind, se, n, "test", dict(extra))]
    if levels is not None:
        bpd = float(bits_per_dim(torch.tensor(-mean, dtype=torch.float64), dim, levels))
        metrics.append(Metric("nll_bpd", bpd, "bits/dim", kind, se / (dim * math.log(2.0)), n, "test", dict(extra)))
    return metrics


# ----------------------------------------------------------------------------- adapters


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """True if `fn` takes a keyword argument `name` (e.g. `generator`)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def test_inputs(model: GenerativeModel, data: Dataset, n_test: int | None) -> tuple[torch.Tensor, int | None, dict]:
    """The test examples a model is scored on, their levels and a note for the record.

    Binarized models see one fixed binarization of the test split (seed `BINARIZE_SEED`), scored
    with `L = 2`; every other model gets pipeline units and does its own dequantization.
    """
    x = data.test if n_test is None else data.test[:n_test]
    if model.data_preprocessing == "binarized":
        gen = torch.Generator().manual_seed(BINARIZE_SEED)
        return binarize(x, gen), 2, {"data": "binarized"}
    return x, data.spec.levels, {}


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int, desc: str) -> torch.Tensor:
    """Apply a per-example function batch by batch on the model's device; results on the CPU, `(N,)`."""
    out = []
    for start in tqdm(range(0, len(x), batch_size), desc=desc, leave=False):
        out.append(fn(x[start : start + batch_size]).detach().double().cpu())
    return torch.cat(out)


def density_methods(
    model: GenerativeModel, k_list: list[int], generator: torch.Generator | None
) -> Iterator[tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]]:
    """The model's own likelihood methods as `(method, kind, fn(x) -> (B,) log densities)`."""

    def call(method: Callable[..., torch.Tensor], *args: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        extra = {"generator": generator} if accepts(method, "generator") else {}
        return lambda x: method(x, *args, **extra)

    if model.likelihood == "exact":
        yield "exact", "exact", call(model.log_prob)
    elif model.likelihood == "bound":
        for k in dict.fromkeys([1, *k_list]):  # k=1 is the ELBO; keep order, drop repeats
            yield ("elbo" if k == 1 else f"iwae-{k}"), "lower_bound", call(model.log_prob_bound, int(k))
    elif model.likelihood == "estimate":
        yield "estimate", "estimate", call(model.log_prob_estimate)


def evaluate(model: GenerativeModel, data: Dataset, cfg: Any, generator: torch.Generator | None) -> list[Metric]:
    """Every likelihood metric the model's capabilities allow, on the test split.

    Args:
        model: a trained model.
        data: the dataset it was trained on.
        cfg: the eval config; only `cfg.likelihood` is read.
        generator: randomness for the evaluation (dequantization, importance samples, AIS).

    Returns:
        The metrics, in the order they were computed.
    """
    lcfg = cfg.likelihood
    if not lcfg.get("enabled", True):
        return []
    was_training = model.training
    model.eval()
    try:
        x, levels, note = test_inputs(model, data, lcfg.get("n_test"))
        device = model.device
        metrics: list[Metric] = []
        k_list = [int(k) for k in lcfg.get("iwae_k", [])]
        for method, kind, fn in density_methods(model, k_list, generator):
            with torch.no_grad():
                lp = batched(lambda xb, fn=fn: fn(xb.to(device)), x, int(lcfg.batch_size), f"likelihood {method}")
            metrics += nll_metrics(lp, data.spec.dim, levels, kind, method, note)
        return metrics
    finally:
        model.train(was_training)
