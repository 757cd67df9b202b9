"""The likelihood cases of `genbench validate` (genbench/validate.py): estimators on problems with a known answer.

Each case runs the suite's own code (the likelihood adapters, the AIS core, the DBM's log Z) and returns `Check`
rows: the truth (closed form or brute force), the estimate, its Monte Carlo standard error and a stated
tolerance. `sizes` is the preset's section of conf/validate.yaml; the AIS protocol is the eval preset's own
(`eval.likelihood.ais`), so the AIS rows measure what that preset ships.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from omegaconf import OmegaConf

from genbench.data import Dataset, DataSpec, ToyMixture, load_toy2d
from genbench.metrics import ais
from genbench.metrics import likelihood as lk
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel


@dataclass
class Check:
    """One row of the table: `error = estimate - truth`, judged against `tolerance` (said in words)."""

    estimator: str
    case: str
    truth: float
    estimate: float
    stderr: float | None
    tolerance: str
    passed: bool
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> float:
        return self.estimate - self.truth


@contextmanager
def timed(rows: list[Check]) -> Iterator[None]:
    """Give every row added inside the block the block's wall time, shared equally."""
    start, before = time.perf_counter(), len(rows)
    yield
    added = rows[before:]
    for row in added:
        row.wall_s = (time.perf_counter() - start) / max(len(added), 1)


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0


# ----------------------------------------------------------------------------- a pPCA decoder, exact in closed form


class PPCADecoder(GenerativeModel):
    """x = W z + b + sigma eps, z ~ N(0, I): `log p(x) = log N(x; b, W W^T + sigma^2 I)` (Tipping & Bishop 1999)."""

    likelihood = "none"

    def __init__(self, dim: int, latent: int, sigma: float, seed: int, own_obs: bool) -> None:
        super().__init__(DataSpec("ppca", (dim,), None, (-10.0, 10.0), 1, 1, f"pPCA D={dim} d={latent} sigma={sigma}"))
        gen = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(dim, latent, generator=gen))
        self.b = torch.nn.Parameter(0.5 * torch.randn(dim, generator=gen))
        self.latent_dim, self.sigma = latent, sigma
        if own_obs:  # the observation model is the true one; otherwise AIS must choose sigma on held-out data
            self.log_prob_given_latent = self.true_log_lik
            self.sample_given_latent = self.sample_obs

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T + self.b

    def true_log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        sq = (((x - self.decode(z)) / self.sigma) ** 2).sum(1)
        return -0.5 * sq - x.shape[1] * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def sample_obs(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean = self.decode(z)
        return mean + self.sigma * torch.randn(mean.shape, generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        return self.sample_obs(torch.randn(n, self.latent_dim, generator=generator), generator)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior `N(mean (B, d), cov (d, d))`, float64."""
        W = self.W.detach().double()
        cov = torch.linalg.inv(W.T @ W / self.sigma**2 + torch.eye(self.latent_dim, dtype=torch.float64))
        return (cov @ W.T @ (x.double() - self.b.detach().double()).T / self.sigma**2).T, cov

    def exact_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        W, b = self.W.detach().double(), self.b.detach().double()
        cov = W @ W.T + self.sigma**2 * torch.eye(len(b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(b, cov).log_prob(x.double())


def ppca_dataset(model: PPCADecoder, n: int, seed: int) -> Dataset:
    with torch.no_grad():
        x = model.sample(3 * n, torch.Generator().manual_seed(seed))
    spec = DataSpec("ppca", (x.shape[1],), None, (-10.0, 10.0), 2 * n, n, "samples of the pPCA decoder")
    return Dataset(spec, x[: 2 * n], x[2 * n :], valid=x[n : 2 * n])


def ais_cases(eval_cfg: Any, sizes: Any) -> list[Check]:
    """AIS as the metric runs it (observation model, batching, protocol of the preset) on a narrow pPCA, with the
    model's own observation model and with a Gaussian one whose sigma AIS must choose on held-out rows; then BDMC."""
    rows: list[Check] = []
    acfg = eval_cfg.likelihood.ais
    settings = lk.ais_settings(acfg)
    tol = float(sizes.ais_tolerance)
    for own_obs, label in ((True, "own p(x|z)"), (False, "gaussian p(x|z), sigma chosen")):
        with timed(rows):
            model = PPCADecoder(20, 5, 0.1, seed=0, own_obs=own_obs)
            data = ppca_dataset(model, int(sizes.ais_examples), seed=1)
            gen = torch.Generator().manual_seed(2)
            with lk.frozen(model):
                obs, _, _, fields = lk.observation(model, data, acfg, gen)
                est = lk.forward_in_batches(obs, data.test, 5, settings, int(acfg.batch_size), gen)
            truth = model.exact_log_prob(data.test)
            err, se = mean_se(est.log_p - truth)
            passed = -tol <= err <= 3 * se and fields.get("obs_sigma", model.sigma) == model.sigma
            tolerance = f"-{tol:g} <= error <= 3 se" + ("" if own_obs else ", sigma = 0.1 chosen")
            t = float(truth.mean())
            row = Check("ais", f"pPCA D=20 d=5 sigma=0.1, {label}", t, t + err, se, tolerance, passed)
            row.extra = {**settings.protocol(), **est.summary(), **{k: v for k, v in fields.items() if "sigma" in k}}
            rows.append(row)
    return rows + bdmc_case(eval_cfg, sizes)


def bdmc_case(eval_cfg: Any, sizes: Any) -> list[Check]:
    """BDMC on data simulated from the pPCA: the forward run below the truth, the reverse run above it."""
    rows: list[Check] = []
    with timed(rows):
        model = PPCADecoder(20, 5, 0.1, seed=0, own_obs=True)
        settings = lk.ais_settings(eval_cfg.likelihood.ais)
        gen = torch.Generator().manual_seed(3)
        with lk.frozen(model):
            n_sim, cpu = int(sizes.bdmc_examples), torch.device("cpu")
            obs, sample_obs = model.log_prob_given_latent, model.sample_given_latent
            x, lower, upper = ais.bdmc(obs, sample_obs, 5, n_sim, settings, gen, cpu)
        truth = model.exact_log_prob(x)
        lo_err, lo_se = mean_se(lower - truth)
        hi_err, hi_se = mean_se(upper - truth)
        t = float(truth.mean())
        gap = hi_err - lo_err
        rows.append(Check("bdmc lower", "pPCA simulated", t, t + lo_err, lo_se, "error <= 3 se", lo_err <= 3 * lo_se))
        rows.append(Check("bdmc upper", "pPCA simulated", t, t + hi_err, hi_se, "error >= -3 se", hi_err >= -3 * hi_se))
        rows.append(
            Check(
                "bdmc gap",
                "pPCA simulated",
                0.0,
                gap,
                math.hypot(lo_se, hi_se),
                f"gap <= {float(sizes.bdmc_gap):g} nats",
                gap <= float(sizes.bdmc_gap),
            )
        )
    return rows


def iwae_cases(sizes: Any) -> list[Check]:
    """IWAE-k with a deliberately wrong Gaussian q on the pPCA: below the truth, and closer as k grows."""
    rows: list[Check] = []
    model = PPCADecoder(20, 5, 0.1, seed=0, own_obs=True)
    x = ppca_dataset(model, int(sizes.iwae_examples), seed=4).test.double()
    mean, cov = model.posterior(x)
    posterior_std = cov.diagonal().sqrt()
    q_mean, q_std = mean + 0.5 * posterior_std, 1.5 * posterior_std  # off-centre, too wide: not the posterior
    truth = model.exact_log_prob(x)
    gen = torch.Generator().manual_seed(5)
    W, b, sigma = model.W.detach().double(), model.b.detach().double(), model.sigma

    def log_weights(n: int) -> torch.Tensor:
        eps = torch.randn(n, *q_mean.shape, generator=gen, dtype=torch.float64)
        z = q_mean + q_std * eps  # (n, B, d)
        log_q = torch.distributions.Normal(q_mean, q_std).log_prob(z).sum(-1)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_lik = torch.distributions.Normal(z @ W.T + b, sigma).log_prob(x).sum(-1)
        return log_lik + log_prior - log_q  # (n, B)

    previous = -math.inf
    for k in sizes.iwae_k:
        with timed(rows):
            err, se = mean_se(lk.chunked_logmeanexp(log_weights, int(k), 256) - truth)
            passed = err <= 3 * se and err >= previous - 3 * se
            tolerance = "error <= 3 se, and no lower than at the previous k"
            rows.append(
                Check(
                    f"iwae-{k}",
                    "pPCA D=20 d=5 sigma=0.1",
                    float(truth.mean()),
                    float(truth.mean()) + err,
                    se,
                    tolerance,
                    passed,
                )
            )
            previous = err
    return rows


# ----------------------------------------------------------------------------- the DBM's log Z by enumeration


def dbm_case(sizes: Any) -> list[Check]:
    from models.dbm import DBM

    rows: list[Check] = []
    with timed(rows):
        torch.manual_seed(0)
        model = DBM(DataSpec("tiny", (1, 1, 6), 2, (0.0, 1.0), 10, 10, "synthetic"), hidden1=4, hidden2=3).double()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
            model.data_mean.copy_(torch.rand(6, dtype=torch.float64))
        states = [torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64) for n in (6, 4, 3)]
        v, h1, h2 = states
        w1, w2, b, c1, c2 = (t.detach() for t in (model.W1, model.W2, model.b, model.c1, model.c2))
        neg_energy = (
            torch.einsum("ad,dh,bh->ab", v, w1, h1)[:, :, None]
            + torch.einsum("bh,hk,ck->bc", h1, w2, h2)[None]
            + (v @ b)[:, None, None]
            + (h1 @ c1)[None, :, None]
            + (h2 @ c2)[None, None, :]
        )
        truth = float(torch.logsumexp(neg_energy.flatten(), 0))
        estimate, se = model.estimate_log_partition(
            int(sizes.dbm_runs), int(sizes.dbm_betas), torch.Generator().manual_seed(6)
        )
        tolerance = "|error| <= 4 se + 0.02"
        rows.append(
            Check(
                "dbm ais log Z",
                "6 visible, 4 + 3 hidden (2^13 states)",
                truth,
                estimate,
                se,
                tolerance,
                abs(estimate - truth) <= 4 * se + 0.02,
            )
        )
    with timed(rows):
        # The mean-field bound's gap, on every visible state: the enumerated log p*(v) against the importance
        # estimate (h1 summed out, h2 from q) that the partition family records on real data.
        exact = torch.logsumexp(neg_energy.flatten(1), 1)  # (2^6,)
        model.eval_mf_steps = 30
        bound, estimate = model.mean_field_gap(v, int(sizes.dbm_gap_samples), torch.Generator().manual_seed(7))
        error = estimate - exact
        se = float(error.std()) / math.sqrt(len(v))
        rows.append(
            Check(
                "dbm mean-field gap",
                f"64 visible states, {int(sizes.dbm_gap_samples)} samples of h2",
                float((exact - bound).mean()),
                float((estimate - bound).mean()),
                se,
                "|error| <= 4 se + 0.02",
                abs(float(error.mean())) <= 4 * se + 0.02,
            )
        )
    return rows


# ----------------------------------------------------------------------------- densities of sample-only models


class Sampler(GenerativeModel):
    """Draws from `draw(n, generator)` and declares no likelihood: only sample-based estimates apply."""

    likelihood = "none"

    def __init__(self, spec: DataSpec, draw: Callable[[int, torch.Generator | None], torch.Tensor]) -> None:
        super().__init__(spec)
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.draw = draw

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        return self.draw(n, generator)


class ExactDensity(Sampler):
    """An exact model: `log_prob` is a given function (the true density, or a shifted one)."""

    likelihood = "exact"

    def __init__(self, spec: DataSpec, log_prob: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__(spec, lambda n, g: torch.zeros(n, *spec.shape))
        self.log_prob = log_prob  # type: ignore[method-assign]


def parzen_case(sizes: Any) -> list[Check]:
    """Goodfellow et al.'s Parzen protocol on a 2-D standard normal: the KDE of its samples against its density."""
    rows: list[Check] = []
    with timed(rows):
        n = int(sizes.parzen_samples)
        gen = torch.Generator().manual_seed(7)
        spec = DataSpec("gauss2d", (2,), None, (-5.0, 5.0), n, n, "N(0, I_2)")
        train, test = torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen)
        data = Dataset(spec, train, test, valid=torch.randn(min(n, 2000), 2, generator=gen))
        grid = [0.05, 0.1, 0.15, 0.2, 0.3, 0.5]
        pcfg = {"n_samples": n, "n_valid": min(n, 2000), "bandwidth_grid": grid}
        model = Sampler(spec, lambda m, g: torch.randn(m, 2, generator=g))
        lcfg = OmegaConf.create({"parzen": pcfg, "n_test": None})
        centers = model.sample(n, torch.Generator().manual_seed(8)).flatten(1)
        (metric, *_) = lk.parzen_metrics(model, data, lcfg, centers)
        truth = torch.distributions.Normal(0.0, 1.0).log_prob(data.test.double()).sum(1)
        t, se = float(truth.mean()), float(truth.std() / math.sqrt(n))
        tol = float(sizes.parzen_tolerance)
        row = Check(
            "parzen",
            f"N(0, I_2), {n} samples",
            t,
            -metric.value,
            se,
            f"|error| <= {tol:g}",
            abs(-metric.value - t) <= tol,
        )
        row.extra = {"bandwidth": metric.extra["bandwidth"]}
        rows.append(row)
    return rows


def grid_kl(p: ToyMixture, shift: torch.Tensor, step: float = 0.005) -> float:
    """KL(p || p(. - shift)) by quadrature on a fine grid over [-3, 3]^2 (the mixture's mass lies inside)."""
    axis = torch.arange(-3.0, 3.0, step, dtype=torch.float64)
    total = 0.0
    for row in axis.split(100):
        pts = torch.cartesian_prod(row, axis)
        log_p = p.log_density(pts)
        total += float((log_p.exp() * (log_p - p.log_density(pts - shift))).sum()) * step**2
    return total


def no_samples(n: int) -> torch.Tensor:
    """The samples of a model scored by its exact density: never asked for."""
    raise AssertionError("an exact density needs no samples")


def kl_cases(sizes: Any) -> list[Check]:
    """Toy-2D KL to the truth: of the true density (zero), of a shifted one (quadrature), of a perfect sampler's KDE."""
    rows: list[Check] = []
    data = load_toy2d("ring8", n_train=int(sizes.kl_samples), n_test=int(sizes.kl_samples))
    data = replace(data, valid=data.density.sample(2000, torch.Generator().manual_seed(10)))  # chooses bandwidths
    lcfg = OmegaConf.create({"n_test": None, "batch_size": 4096, "kl_to_truth": {"enabled": True}})
    shift = torch.tensor([0.05, 0.0], dtype=torch.float64)
    for label, log_prob, truth in (
        ("the true density", data.density.log_density, 0.0),
        ("the true density shifted by (0.05, 0)", lambda x: data.density.log_density(x.double() - shift), None),
    ):
        with timed(rows):
            truth = grid_kl(data.density, shift) if truth is None else truth
            (metric,) = lk.kl_to_truth_metrics(ExactDensity(data.spec, log_prob), data, lcfg, None, no_samples)
            tolerance = "|error| <= 4 se + 1e-9"
            passed = abs(metric.value - truth) <= 4 * metric.stderr + 1e-9
            rows.append(Check("kl_to_truth", f"ring8, {label}", truth, metric.value, metric.stderr, tolerance, passed))
    with timed(rows):
        kde = {"n_samples": int(sizes.kl_samples), "n_valid": 2000, "bandwidth_grid": [0.01, 0.02, 0.03, 0.05, 0.1]}
        sampler = Sampler(data.spec, data.density.sample)
        cfg = OmegaConf.create({"n_test": None, "batch_size": 4096, "kl_to_truth": kde})
        gen = torch.Generator().manual_seed(9)
        (metric,) = lk.kl_to_truth_metrics(sampler, data, cfg, gen, lambda n: sampler.sample(n, gen).flatten(1))
        tol = float(sizes.kde_kl_tolerance)
        rows.append(
            Check(
                "kl_to_truth (kde)",
                "ring8, a perfect sampler",
                0.0,
                metric.value,
                metric.stderr,
                f"-4 se <= error <= {tol:g}",
                -4 * metric.stderr <= metric.value <= tol,
            )
        )
    return rows


def bits_per_dim_case(sizes: Any) -> list[Check]:
    """Bits/dim of independent categorical pixels (L = 17, D = 64) with a known entropy, through the metric."""
    rows: list[Check] = []
    with timed(rows):
        gen = torch.Generator().manual_seed(14)
        probs = torch.softmax(2 * torch.randn(64, 17, generator=gen, dtype=torch.float64), -1)
        entropy = float(-(probs * probs.log()).sum())
        n = int(sizes.bpd_samples)
        k = torch.multinomial(probs, n, replacement=True, generator=gen).T  # (n, D)
        spec = DataSpec("categorical", (1, 8, 8), 17, (0.0, 1.0), n, n, "independent categoricals")
        x = (k.float() / 16).view(n, 1, 8, 8)
        log_p = lambda v: probs.log().gather(1, torch.round(v.flatten(1) * 16).long().T).sum(0) + 64 * math.log(17)  # noqa: E731
        model = ExactDensity(spec, log_p)
        cfg = OmegaConf.create({"likelihood": {"n_test": None, "batch_size": 4096}})
        bpd = next(m for m in lk.evaluate(EvalContext(model, Dataset(spec, x, x), cfg)) if m.name == "nll_bpd")
        truth = entropy / (64 * math.log(2))
        rows.append(
            Check(
                "nll_bpd",
                "64 independent categoricals, L=17",
                truth,
                bpd.value,
                bpd.stderr,
                "|error| <= 4 se",
                abs(bpd.value - truth) <= 4 * bpd.stderr,
            )
        )
    return rows


def teacher_case(sizes: Any) -> list[Check]:
    """The teacher scored by its own exact density: KL to the truth exactly zero on its test split."""
    from genbench.datasets import load_dataset

    rows: list[Check] = []
    with timed(rows):
        data = load_dataset("teacher", n_train=100, n_valid=10, n_test=int(sizes.teacher_test))
        cfg = OmegaConf.create({"n_test": None, "batch_size": 1024, "kl_to_truth": {"enabled": True}})
        exact = ExactDensity(data.spec, data.density.log_density)
        (metric,) = lk.kl_to_truth_metrics(exact, data, cfg, None, no_samples)
        rows.append(
            Check(
                "kl_to_truth",
                "teacher scored by itself",
                0.0,
                metric.value,
                metric.stderr,
                "|error| <= 1e-9",
                abs(metric.value) <= 1e-9,
            )
        )
    return rows
