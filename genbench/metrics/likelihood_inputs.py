"""What each likelihood method is scored on: the one fixed binarization, the decoder-scale dequantization,
held-out rows for a protocol's free parameter, and small helpers the likelihood adapters share.

The adapters in genbench/metrics/likelihood.py use these, so every method sees the same data the same way
(DESIGN.md, "Units").
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from genbench.data import Dataset, binarize, to_levels
from genbench.errors import GenbenchError
from genbench.model import GenerativeModel

BINARIZE_SEED = 0  # the one fixed binarization of the data every binarized model is scored on
DEQUANTIZE_SEED = 1  # the one fixed dequantization every Gaussian-kernel or Gaussian-observation score uses


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """True if `fn` takes a keyword argument `name` (e.g. `generator`)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def model_inputs(model: GenerativeModel, x: torch.Tensor, levels: int | None) -> tuple[torch.Tensor, int | None, dict]:
    """Pipeline-unit data as the model is scored on it, the levels for bits/dim, and a note for the record.

    Binarized models see one fixed binarization (seed `BINARIZE_SEED`), scored with `L = 2`; every
    other model gets pipeline units and does its own dequantization. The note says which data the numbers
    are about (`data`) and whether the model scores dequantized points (`dequantized`).
    """
    if model.data_variant == "binarized" and levels is not None:
        x = binarize(x, torch.Generator().manual_seed(BINARIZE_SEED))
        return x, 2, {"data": "binarized", "dequantized": False}
    dequantized = model.data_variant == "dequantized" and levels is not None
    return x, levels, {"data": "discrete" if levels is not None else "continuous", "dequantized": dequantized}


def test_inputs(model: GenerativeModel, data: Dataset, n_test: int | None) -> tuple[torch.Tensor, int | None, dict]:
    """The (first `n_test`) test examples as `model_inputs` gives them."""
    return model_inputs(model, data.test if n_test is None else data.test[:n_test], data.spec.levels)


def decoder_scale_inputs(x: torch.Tensor, levels: int | None) -> tuple[torch.Tensor, float]:
    """Discrete data dequantized on the decoder's scale, and the log-Jacobian back to DESIGN units.

    Decoders and model samples put level `k` at `k / (L - 1)` (the pipeline's values), so the points are
    `y = (k + u - 1/2) / (L - 1)` with one fixed `u ~ U[0, 1)` (seed `DEQUANTIZE_SEED`): a uniform over the bin of
    width `1 / (L - 1)` centred on the level. Scoring `(k + u) / L` instead would offset every point from its
    level's centre by up to half a bin and penalise a perfect decoder (2 nats at sigma = 0.1 on digits). Any
    density `p` on `R^D` then gives `log P(k) >= E_u[log p(y)] - D log(L - 1)` (Jensen; the bins are disjoint),
    i.e. `log p(y) + D log(L / (L - 1))` is, in expectation, a lower bound on DESIGN's `log P(k) + D log L`.

    Returns:
        The points (continuous data as is) and `D log(L / (L - 1))` (0 for continuous data), to add to `log p(y)`.
    """
    if levels is None:
        return x, 0.0
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(DEQUANTIZE_SEED)).to(x.device, x.dtype)
    k = to_levels(x, levels).to(x.dtype)
    dim = x[0].numel()
    return (k + u - 0.5) / (levels - 1), dim * math.log(levels / (levels - 1))


def held_out(data: Dataset, n: int) -> tuple[torch.Tensor, str]:
    """Rows that choose a protocol's free parameter (AIS's sigma, a KDE's bandwidth): the first `n` of the
    validation split, and its name for the record. Never training rows, which the model has seen."""
    if data.valid is None or len(data.valid) == 0:
        raise GenbenchError(
            f"dataset {data.spec.name!r} has no validation split to choose bandwidths and noise levels on; "
            f"set dataset.valid_fraction > 0"
        )
    return data.valid[:n], "valid"


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int, desc: str) -> torch.Tensor:
    """Apply a per-example function batch by batch; results float64 on the CPU, `(N,)`."""
    out = []
    for start in tqdm(range(0, len(x), batch_size), desc=desc, leave=False):
        out.append(fn(x[start : start + batch_size]).detach().double().cpu())
    return torch.cat(out)


def at_edge(value: float, grid: Any) -> bool:
    """True if a grid search chose an end of its grid: the best value may lie outside, so widen the grid."""
    return len(grid) > 1 and value in (min(grid), max(grid))


@contextmanager
def frozen(model: GenerativeModel) -> Iterator[None]:
    """No parameter gradients while AIS differentiates with respect to `z` only (saves memory)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
