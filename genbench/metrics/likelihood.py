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

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from genbench.data import Dataset
from genbench.metrics.ais import (
    AISEstimate,
    AISSettings,
    ObsModel,
    ObsSampler,
    ais_log_prob,
    repeat_rows,
    reverse_ais_log_prob,
    simulate,
)
from genbench.metrics.context import EvalContext
from genbench.metrics.likelihood_inputs import (
    accepts,
    at_edge,
    decoder_scale_inputs,
    frozen,
    held_out,
    model_inputs,
    test_inputs,
)
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
PARZEN_WARNING = "Parzen-window estimate, not a likelihood: unreliable in high dimension (Theis et al. 2016)"


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


@dataclass(frozen=True)
class TightestDensity:
    """The model's own tightest log-density (the last of `density_methods`) of the rows it scored, kept so that the
    KL to the truth reuses those numbers on the same rows instead of drawing a second long IWAE (half a toy VAE's
    evaluation)."""

    method: str
    kind: str
    rows: torch.Tensor  # the scored rows, as `test_inputs` gave them
    log_density: torch.Tensor  # (N,) DESIGN units


def own_density_metrics(
    model: GenerativeModel, data: Dataset, lcfg: Any, generator: torch.Generator | None
) -> tuple[list[Metric], TightestDensity | None]:
    """`exact`, `elbo` and `iwae-<k>`, or `estimate`: whatever the model declares, batch by batch; and the tightest
    of them per example (None for a model without a density)."""
    x, levels, note = test_inputs(model, data, lcfg.get("n_test"))
    k_list = [int(k) for k in lcfg.get("iwae_k", [])]
    metrics: list[Metric] = []
    tightest = None
    for method, kind, fn in density_methods(model, k_list, lcfg.get("chunk"), generator):
        with torch.no_grad():
            lp, fields = batched_density(fn, x, int(lcfg.batch_size), model.device, f"likelihood {method}")
        tightest = TightestDensity(method, kind, x, lp)
        if note["dequantized"] and method == "exact":
            method = "dequantized"  # the exact density of dequantized data: a bound on the discrete data
        extra = {**note, **model.likelihood_protocol(), **fields}
        metrics += nll_metrics(lp, data.spec.dim, levels, kind, method, extra)
    return metrics, tightest


# ----------------------------------------------------------------------------- AIS and BDMC


def gaussian_observation(model: GenerativeModel, sigma: float | torch.Tensor) -> tuple[ObsModel, ObsSampler]:
    """`p(x|z) = N(x; decode(z), sigma^2 I)` on flattened data, and a sampler of it.

    `sigma` is one value, or one per example `(B,)` (a grid searched in one AIS run): AIS lays chains out
    chain-major (`repeat_rows`), so row `r` of a batch belongs to example `r mod B`.
    """

    def row_sigma(n: int, device: torch.device) -> torch.Tensor | float:
        if isinstance(sigma, torch.Tensor):
            return sigma.to(device).repeat(n // len(sigma))[:, None]  # (N, 1)
        return sigma

    def log_lik(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = model.decode(z).flatten(1)  # (N, D)
        s = row_sigma(len(mean), mean.device)
        sq = (((x.flatten(1) - mean) / s) ** 2).sum(1)
        log_s = torch.log(s).squeeze(1) if isinstance(s, torch.Tensor) else math.log(s)
        return -0.5 * sq - mean.shape[1] * (log_s + 0.5 * math.log(2 * math.pi))

    def sample(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        mean = model.decode(z)
        s = row_sigma(len(mean), mean.device)
        s = s.view(-1, *([1] * (mean.dim() - 1))) if isinstance(s, torch.Tensor) else s
        return mean + s * randn(tuple(mean.shape), generator, mean.device)

    return log_lik, sample


def ais_settings(acfg: Any, steps: int | None = None) -> AISSettings:
    """The AIS protocol of an eval config's `likelihood.ais` section (`steps` overrides, e.g. `select_steps`)."""
    defaults = AISSettings(1)
    return AISSettings(
        steps=int(steps if steps is not None else acfg.steps),
        leapfrog=int(acfg.leapfrog),
        step_size=float(acfg.step_size),
        target_accept=float(acfg.target_accept),
        chains=int(acfg.chains),
        adapt_rate=float(acfg.get("adapt_rate", defaults.adapt_rate)),
        pilot_chains=int(acfg.get("pilot_chains", defaults.pilot_chains)),
        schedule=str(acfg.get("schedule", defaults.schedule)),
        start_spread=float(acfg.get("start_spread", defaults.start_spread)),
        linear_share=float(acfg.get("linear_share", defaults.linear_share)),
    )


def choose_sigma(
    model: GenerativeModel, held: torch.Tensor, acfg: Any, generator: torch.Generator | None
) -> tuple[float, dict[str, float]]:
    """The observation noise in `acfg.sigma_grid` with the best mean AIS estimate on held-out data.

    A shorter AIS (`select_steps`) scores every candidate, all in one batch (row `s * n + i`: candidate `s`,
    example `i`), as Wu et al. chose the variance on validation data.
    """
    grid = [float(s) for s in acfg.sigma_grid]
    x = held.to(model.device)
    sigma_rows = torch.tensor(grid, device=model.device).repeat_interleave(len(x))  # (S * n,)
    obs, _ = gaussian_observation(model, sigma_rows)
    estimate = ais_log_prob(
        obs, repeat_rows(x, len(grid)), model.latent_dim, ais_settings(acfg, acfg.select_steps), generator
    )
    means = estimate.log_p.view(len(grid), len(x)).mean(1).tolist()  # (S,)
    scores = {str(s): m for s, m in zip(acfg.sigma_grid, means, strict=True)}
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
    rows, split = held_out(data, int(acfg.select_n))
    held, levels, _ = model_inputs(model, rows, data.spec.levels)
    sigma, scores = choose_sigma(model, decoder_scale_inputs(held, levels)[0], acfg, generator)
    obs, sampler = gaussian_observation(model, sigma)
    fields = {
        "obs_model": "gaussian",
        "obs_sigma": sigma,
        "obs_sigma_scores": scores,
        "obs_sigma_split": split,
        "obs_sigma_at_grid_edge": at_edge(sigma, acfg.sigma_grid),
    }
    return obs, sampler, True, fields


def forward_in_batches(
    obs: ObsModel,
    x: torch.Tensor,
    latent_dim: int,
    settings: AISSettings,
    batch: int,
    generator: torch.Generator | None,
) -> AISEstimate:
    """Forward AIS on `x` `(N, ...)` in runs of at most `batch` examples (each run batches all its chains)."""
    parts = [ais_log_prob(obs, x[i : i + batch], latent_dim, settings, generator) for i in range(0, len(x), batch)]
    return AISEstimate(
        torch.cat([p.log_p for p in parts]),
        torch.cat([p.betas for p in parts], dim=1),
        torch.cat([p.step_sizes for p in parts], dim=1),
        torch.cat([p.accept for p in parts]),
    )


def bdmc_fields(lower: torch.Tensor, upper: torch.Tensor) -> dict[str, Any]:
    """BDMC's bracket on simulated examples, in nats per example (means over examples), and its gap's stderr."""
    gap = (upper - lower).double()
    return {
        "bdmc_lower": float(lower.double().mean()),
        "bdmc_upper": float(upper.double().mean()),
        "bdmc_gap_nats": float(gap.mean()),
        "bdmc_gap_stderr": mean_stderr(gap)[1],
        "bdmc_n": len(gap),
    }


def ais_metrics(model: GenerativeModel, data: Dataset, lcfg: Any, generator: torch.Generator | None) -> list[Metric]:
    """AIS estimate of `log p(x)` on the test split for a decoder-based model, with its BDMC bracket.

    The test examples and BDMC's `bdmc_n` examples simulated from the model anneal together (in runs of
    `batch_size` examples); the reverse chains then retrace the simulated examples' schedules and steps.
    """
    acfg = lcfg.ais
    settings = ais_settings(acfg)
    n_sim = int(acfg.get("bdmc_n", 0))
    with frozen(model):
        obs, sampler, continuous, fields = observation(model, data, acfg, generator)
        x, levels, note = test_inputs(model, data, acfg.get("n_test"))
        log_jacobian = 0.0
        if continuous:
            x, log_jacobian = decoder_scale_inputs(x, levels)
            note = {**note, "dequantized": levels is not None, "scale": "decoder"}  # (k + u - 1/2) / (L - 1)
        x, n_test = x.to(model.device), len(x)
        if n_sim and sampler is None:
            fields["bdmc"] = "n/a: the model's observation model has no sample_given_latent(z, generator)"
            n_sim = 0
        if n_sim:
            x_sim, z_sim = simulate(sampler, model.latent_dim, n_sim, generator, model.device)
            x = torch.cat([x, x_sim.view(n_sim, *x.shape[1:])])
        forward = forward_in_batches(obs, x, model.latent_dim, settings, int(acfg.batch_size), generator)
        if n_sim:
            sim = forward.examples(slice(n_test, None))
            fields |= bdmc_fields(sim.log_p, reverse_ais_log_prob(obs, x[n_test:], z_sim, sim, settings, generator))
    test_run = forward.examples(slice(0, n_test))
    protocol = {**settings.protocol(), **test_run.summary(), "log_jacobian": log_jacobian}
    lp = test_run.log_p.cpu() + log_jacobian
    if fields.get("obs_model") == "gaussian" and levels is not None:
        fields |= observation_floor(data, x[:n_test].cpu(), fields["obs_sigma"], log_jacobian, levels)
    fields |= paired_with_own_bound(model, data, lp, lcfg, levels, generator)
    return nll_metrics(lp, data.spec.dim, levels, "lower_bound", "ais", {**note, **fields, **protocol})


def observation_floor(
    data: Dataset, points: torch.Tensor, sigma: float, log_jacobian: float, levels: int
) -> dict[str, float]:
    """What the Gaussian observation model alone costs: bits/dim of the training images themselves used as the
    generator (an equal mixture of `N(x_i, sigma^2 I)`), on the same test points. No generator that reproduces
    the data's distribution scores much below this under the same sigma, so it is the floor of a GAN's AIS cell.
    """
    centers = data.train.flatten(1)
    floor = parzen_log_density(points.flatten(1), centers, sigma) + log_jacobian  # (n,) nats, DESIGN units
    mean = float(floor.double().mean())
    bpd = float(bits_per_dim(torch.tensor(mean, dtype=torch.float64), data.spec.dim, levels))
    return {"obs_floor_nats": -mean, "obs_floor_bpd": bpd}


def paired_with_own_bound(
    model: GenerativeModel, data: Dataset, ais_lp: torch.Tensor, lcfg: Any, levels: int | None, generator: Any
) -> dict[str, Any]:
    """AIS against the model's own tightest bound (IWAE-k) on the same test examples, paired per example (nats;
    positive: AIS is tighter). A bound model only; the AIS subset is small, so the pairing removes the spread
    between examples from the comparison."""
    if model.likelihood != "lower_bound":
        return {}
    methods = list(density_methods(model, [int(k) for k in lcfg.get("iwae_k", [])], lcfg.get("chunk"), generator))
    if not methods:
        return {}
    method, _, fn = methods[-1]
    x, _, _ = test_inputs(model, data, len(ais_lp))
    with torch.no_grad():
        own, _ = batched_density(fn, x, int(lcfg.batch_size), model.device, f"paired {method}")
    mean, se = mean_stderr(ais_lp.double() - own)
    return {"paired_method": method, "paired_gap_nats": mean, "paired_gap_stderr": se, "paired_n": len(own)}


# ----------------------------------------------------------------------------- Parzen window and KL to truth


def kde_fit(
    model: GenerativeModel, data: Dataset, cfg: Any, levels: int | None, centers: torch.Tensor
) -> tuple[torch.Tensor, float, dict[str, Any]]:
    """Model samples `(M, D)` as kernel centres and the bandwidth chosen on the validation split (on the decoder's
    scale).

    Returns:
        The centres, the bandwidth, and the record fields of the choice (scores, split, grid edge).
    """
    rows, split = held_out(data, int(cfg.n_valid))
    held, held_levels, _ = model_inputs(model, rows, levels)
    valid = decoder_scale_inputs(held, held_levels)[0].flatten(1)
    bandwidth, scores = choose_bandwidth(valid, centers.to(model.device), list(cfg.bandwidth_grid))
    fields = {
        "bandwidth": bandwidth,
        "bandwidth_scores": scores,
        "bandwidth_split": split,
        "bandwidth_at_grid_edge": at_edge(bandwidth, cfg.bandwidth_grid),
        "n_samples": len(centers),
    }
    return centers, bandwidth, fields


def kde_log_density(
    model: GenerativeModel,
    data: Dataset,
    x: torch.Tensor,
    cfg: Any,
    levels: int | None,
    centers: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A Gaussian KDE on model samples `centers (M, D)`, at `x` dequantized on the decoder's scale, in DESIGN
    units `(N,)`."""
    centers, bandwidth, fields = kde_fit(model, data, cfg, levels, centers)
    points, log_jacobian = decoder_scale_inputs(x, levels)
    lp = parzen_log_density(points.flatten(1), centers.to(model.device), bandwidth) + log_jacobian
    return lp, {**fields, "log_jacobian": log_jacobian}


def parzen_metrics(model: GenerativeModel, data: Dataset, lcfg: Any, centers: torch.Tensor) -> list[Metric]:
    """Goodfellow et al.'s Parzen-window protocol on the test split with model samples as centres, an `estimate`."""
    x, levels, note = test_inputs(model, data, lcfg.get("n_test"))
    lp, fields = kde_log_density(model, data, x, lcfg.parzen, levels, centers)
    if levels is not None:
        note = {**note, "dequantized": True, "scale": "decoder"}
    return nll_metrics(lp, data.spec.dim, levels, "estimate", "parzen", {**note, **fields, "warning": PARZEN_WARNING})


def model_log_density(
    model: GenerativeModel,
    data: Dataset,
    x: torch.Tensor,
    lcfg: Any,
    generator: torch.Generator | None,
    samples: Callable[[int], torch.Tensor],
) -> tuple[torch.Tensor, dict[str, Any]]:
    """`log p_model(x)` in DESIGN units: the model's own density (largest IWAE k for bounds), else a KDE on
    `samples(n)`, the model's samples flattened to `(n, D)`."""
    methods = list(density_methods(model, [int(k) for k in lcfg.get("iwae_k", [])], lcfg.get("chunk"), generator))
    if methods:
        method, kind, fn = methods[-1]
        with torch.no_grad():
            lp, _ = batched_density(fn, x, int(lcfg.batch_size), model.device, f"kl_to_truth {method}")
        return lp, {"method": method, "density_kind": kind}
    kcfg = lcfg.kl_to_truth
    lp, fields = kde_log_density(model, data, x, kcfg, data.spec.levels, samples(int(kcfg.n_samples)))
    return lp, {"method": "kde", "density_kind": "estimate", **fields}


def kl_to_truth_metrics(
    model: GenerativeModel,
    data: Dataset,
    lcfg: Any,
    generator: torch.Generator | None,
    samples: Callable[[int], torch.Tensor],
    tightest: TightestDensity | None = None,
) -> list[Metric]:
    """`E_true[log p_true(x) - log p_model(x)]` over the test split of data with a known density (nats).

    Toy 2-D mixtures and the `teacher` images know their density (`data.density.log_density`, DESIGN units).
    With a lower bound for `log p_model` the estimate is, in expectation, an upper bound on the KL;
    `density_kind` in the record says which density was used. A binarized model's density is of other data
    (L = 2), so it gets none. `tightest`, the model's own density of these same rows (`own_density_metrics`), is
    used as it is, so the KL and the test NLL come from one estimate.
    """
    if model.data_variant == "binarized":
        return []
    x = kl_test_rows(data, lcfg)
    if tightest is not None and tightest.rows.shape == x.shape and torch.equal(tightest.rows, x):
        log_model, fields = tightest.log_density, {"method": tightest.method, "density_kind": tightest.kind}
    else:
        log_model, fields = model_log_density(model, data, x, lcfg, generator, samples)
    return [kl_metric(data, x, log_model, {**fields, "source": "model"})]


def kl_floor_metrics(model: GenerativeModel, data: Dataset, lcfg: Any, generator: torch.Generator) -> list[Metric]:
    """The real-data floor of a KL to the truth scored by a KDE: the same KDE (as many centres, the bandwidth
    chosen on the same validation rows) on training rows, which are draws of the truth itself.

    A sampler that reproduced the truth would score about this, not 0: the kernel's smoothing and the finite
    centres cost something, so a GAN's KDE-scored KL is read against this number (`source: data`).
    """
    kcfg = lcfg.kl_to_truth
    rows = data.train[torch.randperm(len(data.train), generator=generator)[: int(kcfg.n_samples)]]
    x = kl_test_rows(data, lcfg)
    log_floor, fields = kde_log_density(model, data, x, kcfg, data.spec.levels, rows.flatten(1))
    fields = {"method": "kde", "density_kind": "estimate", **fields, "source": "data", "centres_from": "train"}
    return [kl_metric(data, x, log_floor, fields)]


def kl_test_rows(data: Dataset, lcfg: Any) -> torch.Tensor:
    return data.test if lcfg.get("n_test") is None else data.test[: lcfg.n_test]


def kl_metric(data: Dataset, x: torch.Tensor, log_model: torch.Tensor, fields: dict[str, Any]) -> Metric:
    """`mean(log p_true(x) - log_model)` over test rows `x` (nats), with its standard error."""
    mean, se = mean_stderr(data.density.log_density(x).cpu().double() - log_model.cpu().double())
    return Metric("kl_to_truth", mean, "nats", "estimate", se, len(x), "test", fields, ("method", "source"))


# ----------------------------------------------------------------------------- the family's entry point


def enabled(lcfg: Any, name: str) -> bool:
    section = lcfg.get(name)
    return section is not None and bool(section.get("enabled", False))


def evaluate(ctx: EvalContext) -> list[Metric]:
    """Every likelihood metric the model's capabilities allow, on the test split (eval section `likelihood`).

    Reads `ctx.cfg.likelihood` (sections `ais`, `parzen`, `kl_to_truth`); importance samples and AIS draw from
    generators of their own, Parzen and KDE centres are the context's samples of the default mode.

    Returns:
        The metrics: the model's own density first, then AIS, Parzen and KL to truth (beside its real-data floor
        where a KDE scores it) where they apply.
    """
    model, data, lcfg = ctx.model, ctx.data, ctx.cfg.likelihood
    if not lcfg.get("enabled", True):
        return []

    def samples(n: int) -> torch.Tensor:
        return ctx.samples(n).flatten(1)  # (n, D) kernel centres

    metrics, tightest = own_density_metrics(model, data, lcfg, ctx.generator("likelihood"))
    if enabled(lcfg, "ais") and has_decoder(model):
        metrics += ais_metrics(model, data, lcfg, ctx.generator("ais"))
    if enabled(lcfg, "parzen") and (model.likelihood == "none" or lcfg.parzen.get("apply_to") == "all"):
        metrics += parzen_metrics(model, data, lcfg, samples(int(lcfg.parzen.n_samples)))
    if enabled(lcfg, "kl_to_truth") and data.density is not None:
        kl = kl_to_truth_metrics(model, data, lcfg, ctx.generator("kl_to_truth"), samples, tightest)
        if any(m.extra["method"] == "kde" for m in kl):  # a sampler's KL needs the floor of its estimator
            kl += kl_floor_metrics(model, data, lcfg, ctx.generator("kl_to_truth floor"))
        metrics += kl
    return metrics
