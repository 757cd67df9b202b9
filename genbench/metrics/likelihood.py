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
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from genbench.data import Dataset, binarize, dequantize
from genbench.errors import GenbenchError
from genbench.metrics.ais import AISSettings, ObsModel, ObsSampler, ais_log_prob, bdmc
from genbench.metrics.context import EvalContext
from genbench.metrics.parzen import choose_bandwidth, parzen_log_density
from genbench.model import GenerativeModel, has_decoder, randn
from genbench.results import Metric

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
        extra: further fields for the record (same on both metrics); `data` (the data the number is about:
            `discrete`, `binarized`, `continuous`; default from `levels`) and `dequantized` (scored on `(k+u)/L`).

    Returns:
        The metrics, nats first.
    """
    extra = {"method": method, "data": "discrete" if levels is not None else "continuous", **(extra or {})}
    if extra.get("dequantized") and kind == "exact":
        # An exact density of uniformly dequantized data bounds the discrete likelihood from below (Jensen over
        # the noise u: E_u log p((k+u)/L) <= log P(k) + D log L), so on the discrete data it is a bound.
        kind = "lower_bound"
    n = log_probs.numel()
    mean, se = mean_stderr(-log_probs)
    metrics = [Metric("nll_nats", mean, "nats/example", kind, se, n, "test", dict(extra), NLL_VARIANT)]
    if levels is not None:
        bpd = float(bits_per_dim(torch.tensor(-mean, dtype=torch.float64), dim, levels))
        se_bpd = se / (dim * math.log(2.0))
        metrics.append(Metric("nll_bpd", bpd, "bits/dim", kind, se_bpd, n, "test", dict(extra), NLL_VARIANT))
    return metrics


# ----------------------------------------------------------------------------- adapters

NLL_VARIANT = ("method", "data")  # a likelihood number is told apart by its method and the data it is about
BINARIZE_SEED = 0  # the one fixed binarization of the data every binarized model is scored on
DEQUANTIZE_SEED = 1  # the one fixed dequantization every Gaussian-kernel or Gaussian-observation score uses
PARZEN_WARNING = "Parzen-window estimate, not a likelihood: unreliable in high dimension (Theis et al. 2016)"


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


def validation_rows(data: Dataset, n: int) -> torch.Tensor:
    """The first `n` rows of the validation split, on which every selection is made (never training rows)."""
    if data.valid is None or len(data.valid) == 0:
        raise GenbenchError(
            f"dataset {data.spec.name!r} has no validation split to choose bandwidths and noise levels on; "
            f"set dataset.valid_fraction > 0"
        )
    return data.valid[:n]


def continuous_inputs(x: torch.Tensor, levels: int | None) -> torch.Tensor:
    """Discrete data dequantized to `(k + u) / L` with a fixed `u` (DESIGN units); continuous data as is.

    A Gaussian density on `R^D` evaluated there is a density on `[0, 1]^D` short of the mass it puts
    outside the cube, so `log p - D log L` stays a lower bound in expectation on `log P(k)` (Jensen).
    """
    if levels is None:
        return x
    return dequantize(x, levels, torch.Generator().manual_seed(DEQUANTIZE_SEED))


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


# ----------------------------------------------------------------------------- the model's own density


DensityFn = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, Any]]]  # x -> ((B,) log densities, fields)


def density_methods(
    model: GenerativeModel, k_list: list[int], chunk: int | None, generator: torch.Generator | None
) -> Iterator[tuple[str, str, DensityFn]]:
    """The model's own likelihood methods as `(method, kind, fn(x) -> ((B,) log densities, fields))`.

    The fields are what an estimate reports about its estimated parts (a DBM's AIS log Z); empty otherwise.
    """

    def call(method: Callable[..., Any], *args: Any, with_fields: bool = False) -> DensityFn:
        kwargs: dict[str, Any] = {"generator": generator} if accepts(method, "generator") else {}
        if chunk is not None and accepts(method, "chunk"):
            kwargs["chunk"] = chunk
        if with_fields:
            return lambda x: method(x, *args, **kwargs)
        return lambda x: (method(x, *args, **kwargs), {})

    if model.likelihood == "exact":
        yield "exact", "exact", call(model.log_prob)
    elif model.likelihood == "lower_bound":
        ks = [k for k in dict.fromkeys([1, *k_list]) if model.max_bound_k is None or k <= model.max_bound_k]
        for k in ks:  # k=1 is the ELBO; keep order, drop repeats and what the model cannot do
            yield ("elbo" if k == 1 else f"iwae-{k}"), "lower_bound", call(model.log_prob_bound, int(k))
    elif model.likelihood == "estimate":
        yield "estimate", "estimate", call(model.log_prob_estimate, with_fields=True)


def batched_density(fn: DensityFn, x: torch.Tensor, batch_size: int, device: torch.device, desc: str) -> tuple:
    """`fn` over `x` batch by batch: log densities `(N,)` float64 on the CPU and the fields of the first batch.

    An estimate's fields (its log Z) must not change between batches: a model that re-estimated them per batch
    would score each batch against another normaliser, so that is refused.
    """
    out, fields = [], None
    for start in tqdm(range(0, len(x), batch_size), desc=desc, leave=False):
        lp, batch_fields = fn(x[start : start + batch_size].to(device))
        if fields is not None and batch_fields != fields:
            raise RuntimeError(f"{desc}: the estimate's fields changed between batches: {fields} -> {batch_fields}")
        fields = batch_fields
        out.append(lp.detach().double().cpu())
    return torch.cat(out), fields or {}


def own_density_metrics(
    model: GenerativeModel, data: Dataset, lcfg: Any, generator: torch.Generator | None
) -> list[Metric]:
    """`exact`, `elbo` and `iwae-<k>`, or `estimate`: whatever the model declares, batch by batch."""
    x, levels, note = test_inputs(model, data, lcfg.get("n_test"))
    k_list = [int(k) for k in lcfg.get("iwae_k", [])]
    metrics: list[Metric] = []
    for method, kind, fn in density_methods(model, k_list, lcfg.get("chunk"), generator):
        with torch.no_grad():
            lp, fields = batched_density(fn, x, int(lcfg.batch_size), model.device, f"likelihood {method}")
        if note["dequantized"] and method == "exact":
            method = "dequantized"  # the exact density of dequantized data: a bound on the discrete data
        extra = {**note, **model.likelihood_protocol(), **fields}
        metrics += nll_metrics(lp, data.spec.dim, levels, kind, method, extra)
    return metrics


# ----------------------------------------------------------------------------- AIS and BDMC


def gaussian_observation(model: GenerativeModel, sigma: float) -> tuple[ObsModel, ObsSampler]:
    """`p(x|z) = N(x; decode(z), sigma^2 I)` on flattened data, and a sampler of it."""

    def log_lik(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = model.decode(z).flatten(1)  # (N, D)
        sq = (((x.flatten(1) - mean) / sigma) ** 2).sum(1)
        return -0.5 * sq - mean.shape[1] * (math.log(sigma) + 0.5 * math.log(2 * math.pi))

    def sample(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        mean = model.decode(z)
        return mean + sigma * randn(tuple(mean.shape), generator, mean.device)

    return log_lik, sample


def ais_settings(acfg: Any) -> AISSettings:
    return AISSettings(
        int(acfg.steps), int(acfg.leapfrog), float(acfg.step_size), float(acfg.target_accept), int(acfg.chains)
    )


def choose_sigma(
    model: GenerativeModel, held_out: torch.Tensor, acfg: Any, generator: torch.Generator | None
) -> tuple[float, dict[str, float]]:
    """The observation noise in `acfg.sigma_grid` with the best mean AIS estimate on held-out data.

    A shorter AIS (`select_steps`) scores each candidate, as Wu et al. chose the variance on validation data.
    """
    settings = AISSettings(
        int(acfg.select_steps), int(acfg.leapfrog), float(acfg.step_size), float(acfg.target_accept), int(acfg.chains)
    )
    x = held_out.to(model.device)
    scores = {}
    for sigma in acfg.sigma_grid:
        obs, _ = gaussian_observation(model, float(sigma))
        scores[str(sigma)] = float(ais_log_prob(obs, x, model.latent_dim, settings, generator)[0].mean())
    best = max(acfg.sigma_grid, key=lambda s: scores[str(s)])
    return float(best), scores


def observation(
    model: GenerativeModel, data: Dataset, acfg: Any, generator: torch.Generator | None
) -> tuple[ObsModel, ObsSampler | None, bool, dict[str, Any]]:
    """The observation model AIS uses: the model's own `log_prob_given_latent`, else a Gaussian on `decode(z)`.

    Returns:
        `log p(x|z)`, a sampler of `p(x|z)` (None if the model has none), whether data must be
        dequantized for it, and the record fields describing it.
    """
    if callable(getattr(model, "log_prob_given_latent", None)):
        sampler = getattr(model, "sample_given_latent", None)
        return model.log_prob_given_latent, sampler if callable(sampler) else None, False, {"obs_model": "model"}
    held, levels, _ = model_inputs(model, validation_rows(data, int(acfg.select_n)), data.spec.levels)
    sigma, scores = choose_sigma(model, continuous_inputs(held, levels), acfg, generator)
    obs, sampler = gaussian_observation(model, sigma)
    fields = {
        "obs_model": "gaussian",
        "obs_sigma": sigma,
        "obs_sigma_scores": scores,
        "obs_sigma_split": "valid",
        "obs_sigma_at_grid_edge": at_edge(sigma, acfg.sigma_grid),
    }
    return obs, sampler, True, fields


def bdmc_fields(
    obs: ObsModel, sampler: ObsSampler | None, model: GenerativeModel, acfg: Any, generator: torch.Generator | None
) -> dict[str, Any]:
    """BDMC bracket on `acfg.bdmc_n` simulated examples, in nats per example (mean over examples)."""
    n = int(acfg.get("bdmc_n", 0))
    if n == 0:
        return {}
    if sampler is None:
        return {"bdmc": "n/a: the model's observation model has no sample_given_latent(z, generator)"}
    _, lower, upper = bdmc(obs, sampler, model.latent_dim, n, ais_settings(acfg), generator, model.device)
    lo, hi = float(lower.double().mean()), float(upper.double().mean())
    return {"bdmc_lower": lo, "bdmc_upper": hi, "bdmc_gap_nats": hi - lo, "bdmc_n": n}


def ais_metrics(model: GenerativeModel, data: Dataset, lcfg: Any, generator: torch.Generator | None) -> list[Metric]:
    """AIS estimate of `log p(x)` on the test split for a decoder-based model, with its BDMC bracket."""
    acfg = lcfg.ais
    settings = ais_settings(acfg)
    with frozen(model):
        obs, sampler, continuous, fields = observation(model, data, acfg, generator)
        x, levels, note = test_inputs(model, data, acfg.get("n_test"))
        if continuous:
            x = continuous_inputs(x, levels)
            note = {**note, "dequantized": levels is not None}
        rates: list[float] = []

        def estimate(xb: torch.Tensor) -> torch.Tensor:
            lp, rate = ais_log_prob(obs, xb.to(model.device), model.latent_dim, settings, generator)
            rates.append(rate)
            return lp

        lp = batched(estimate, x, int(acfg.batch_size), "ais")
        fields |= bdmc_fields(obs, sampler, model, acfg, generator)
    protocol = {
        "schedule": "sigmoid(radius=4)",
        "steps": settings.steps,
        "chains": settings.chains,
        "leapfrog": settings.leapfrog,
        "accept_rate": sum(rates) / len(rates),
    }
    return nll_metrics(lp, data.spec.dim, levels, "lower_bound", "ais", {**note, **fields, **protocol})


# ----------------------------------------------------------------------------- Parzen window and KL to truth


def kde_fit(
    model: GenerativeModel, data: Dataset, cfg: Any, levels: int | None, centers: torch.Tensor
) -> tuple[torch.Tensor, float, dict[str, float]]:
    """Model samples `(M, D)` as kernel centres and the bandwidth chosen on the validation split."""
    held, held_levels, _ = model_inputs(model, validation_rows(data, int(cfg.n_valid)), levels)
    valid = continuous_inputs(held, held_levels).flatten(1)
    bandwidth, scores = choose_bandwidth(valid, centers.to(model.device), list(cfg.bandwidth_grid))
    return centers, bandwidth, scores


def parzen_metrics(model: GenerativeModel, data: Dataset, lcfg: Any, centers: torch.Tensor) -> list[Metric]:
    """Goodfellow et al.'s Parzen-window protocol on the test split with model samples as centres, an `estimate`."""
    pcfg = lcfg.parzen
    centers, bandwidth, scores = kde_fit(model, data, pcfg, data.spec.levels, centers)
    x, levels, note = test_inputs(model, data, lcfg.get("n_test"))
    lp = parzen_log_density(continuous_inputs(x, levels).flatten(1), centers.to(model.device), bandwidth)
    note = {**note, "dequantized": levels is not None}
    fields = {
        "bandwidth": bandwidth,
        "bandwidth_scores": scores,
        "bandwidth_split": "valid",
        "bandwidth_at_grid_edge": at_edge(bandwidth, pcfg.bandwidth_grid),
        "n_samples": len(centers),
        "warning": PARZEN_WARNING,
    }
    return nll_metrics(lp, data.spec.dim, levels, "estimate", "parzen", {**note, **fields})


def model_log_density(
    model: GenerativeModel,
    data: Dataset,
    x: torch.Tensor,
    lcfg: Any,
    generator: torch.Generator | None,
    samples: Callable[[int], torch.Tensor],
) -> tuple[torch.Tensor, dict[str, Any]]:
    """`log p_model(x)` for toy data: the model's own density (largest IWAE k for bounds), else a KDE on
    `samples(n)`, the model's samples flattened to `(n, D)`."""
    methods = list(density_methods(model, [int(k) for k in lcfg.get("iwae_k", [])], lcfg.get("chunk"), generator))
    if methods:
        method, kind, fn = methods[-1]
        with torch.no_grad():
            lp, _ = batched_density(fn, x, int(lcfg.batch_size), model.device, f"kl_to_truth {method}")
        return lp, {"method": method, "density_kind": kind}
    kcfg = lcfg.kl_to_truth
    centers, bandwidth, _ = kde_fit(model, data, kcfg, None, samples(int(kcfg.n_samples)))
    lp = parzen_log_density(x, centers.to(model.device), bandwidth)
    edge = at_edge(bandwidth, lcfg.kl_to_truth.bandwidth_grid)
    fields = {"method": "kde", "density_kind": "estimate", "bandwidth": bandwidth, "bandwidth_at_grid_edge": edge}
    return lp, {**fields, "n_samples": len(centers)}


def kl_to_truth_metrics(
    model: GenerativeModel,
    data: Dataset,
    lcfg: Any,
    generator: torch.Generator | None,
    samples: Callable[[int], torch.Tensor],
) -> list[Metric]:
    """`E_true[log p_true(x) - log p_model(x)]` over the toy test split (a Monte-Carlo estimate, nats).

    With a lower bound for `log p_model` the estimate is, in expectation, an upper bound on the KL;
    `density_kind` in the record says which density was used.
    """
    x = data.test if lcfg.get("n_test") is None else data.test[: lcfg.n_test]
    log_model, fields = model_log_density(model, data, x, lcfg, generator, samples)
    diff = data.density.log_density(x).cpu() - log_model
    mean, se = mean_stderr(diff)
    return [Metric("kl_to_truth", mean, "nats", "estimate", se, len(x), "test", fields, ("method",))]


# ----------------------------------------------------------------------------- the family's entry point


def enabled(lcfg: Any, name: str) -> bool:
    section = lcfg.get(name)
    return section is not None and bool(section.get("enabled", False))


def evaluate(ctx: EvalContext) -> list[Metric]:
    """Every likelihood metric the model's capabilities allow, on the test split (eval section `likelihood`).

    Reads `ctx.cfg.likelihood` (sections `ais`, `parzen`, `kl_to_truth`); importance samples and AIS draw from
    generators of their own, Parzen and KDE centres are the context's samples of the default mode.

    Returns:
        The metrics: the model's own density first, then AIS, Parzen and KL to truth where they apply.
    """
    model, data, lcfg = ctx.model, ctx.data, ctx.cfg.likelihood
    if not lcfg.get("enabled", True):
        return []

    def samples(n: int) -> torch.Tensor:
        return ctx.samples(n).flatten(1)  # (n, D) kernel centres

    metrics = own_density_metrics(model, data, lcfg, ctx.generator("likelihood"))
    if enabled(lcfg, "ais") and has_decoder(model):
        metrics += ais_metrics(model, data, lcfg, ctx.generator("ais"))
    if enabled(lcfg, "parzen") and (model.likelihood == "none" or lcfg.parzen.get("apply_to") == "all"):
        metrics += parzen_metrics(model, data, lcfg, samples(int(lcfg.parzen.n_samples)))
    if enabled(lcfg, "kl_to_truth") and data.density is not None:
        metrics += kl_to_truth_metrics(model, data, lcfg, ctx.generator("kl_to_truth"), samples)
    return metrics
