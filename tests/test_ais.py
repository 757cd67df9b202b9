"""Tests of genbench/metrics/ais.py against closed forms: pPCA decoders with a narrow and a wide posterior.

Each test is sized so the mutants named in issue 14 fail it: the weight update moved after the transition
(the estimate rises above the truth), HMC without its accept test (the chains sample the wrong distribution),
step sizes steered by the measured chains' own history, and, for the DBM, its AIS weight update moved after the
Gibbs sweep.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genbench.metrics import ais
from models.dbm import ais_log_partition


class PPCA:
    """x = W z + b + sigma * eps, z ~ N(0, I_d): the exact log p(x), posterior and joint samples in closed form."""

    def __init__(self, dim: int, latent: int, sigma: float, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.W = torch.randn(dim, latent, generator=gen)
        self.b = 0.5 * torch.randn(dim, generator=gen)
        self.dim, self.latent, self.sigma = dim, latent, sigma

    def log_lik(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        sq = (((x - z @ self.W.T - self.b) / self.sigma) ** 2).sum(1)
        return -0.5 * sq - self.dim * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def sample_given_latent(self, z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return z @ self.W.T + self.b + self.sigma * torch.randn(len(z), self.dim, generator=generator)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        W, b = self.W.double(), self.b.double()
        cov = W @ W.T + self.sigma**2 * torch.eye(self.dim, dtype=torch.float64)
        return torch.distributions.MultivariateNormal(b, cov).log_prob(x.double())

    def data(self, n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return self.sample_given_latent(torch.randn(n, self.latent, generator=gen), gen)


NARROW = PPCA(20, 5, 0.1)  # posterior std ~0.02 against the prior's 1: slow mixing shows
WIDE = PPCA(6, 2, 0.3)


def errors(model: PPCA, settings: ais.AISSettings, n: int = 24, seed: int = 1) -> torch.Tensor:
    x = model.data(n, seed=100 + seed)
    est = ais.ais_log_prob(model.log_lik, x, model.latent, settings, torch.Generator().manual_seed(seed))
    return est.log_p - model.log_marginal(x)  # (n,): a lower bound, so <= 0 up to Monte Carlo error


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


@pytest.mark.parametrize("model, tolerance", [(NARROW, 0.4), (WIDE, 0.1)], ids=["narrow", "wide"])
def test_ais_is_a_tight_lower_bound_on_the_ppca_closed_form(model: PPCA, tolerance: float) -> None:
    err, se = mean_se(errors(model, ais.AISSettings(steps=800, leapfrog=1, chains=4)))
    assert err < 3 * se + 0.02  # below the truth (a stochastic lower bound) up to Monte Carlo error
    assert err > -tolerance  # and close to it
    # One step is importance sampling from the prior: far worse, so the annealing does the work.
    prior_is, _ = mean_se(errors(model, ais.AISSettings(steps=1, chains=8)))
    assert prior_is < -5 * tolerance


@pytest.mark.parametrize("steps", [2, 10])
def test_the_mean_weight_is_unbiased_for_p_x_at_any_schedule_length(steps: int) -> None:
    """AIS's weight is an unbiased estimate of p(x) however short the schedule: with many chains the log of
    the mean weight meets the closed form within its delta-method error (a wrong weight order or transition
    biases it at every length)."""
    x = WIDE.data(4, seed=5)
    chains = 4000
    settings = ais.AISSettings(steps=steps, leapfrog=3, chains=chains, start_spread=1.0, linear_share=0.5)
    gen = torch.Generator().manual_seed(6)
    betas = ais.make_schedule(WIDE.log_lik, x, 2, settings, gen)
    x_rep = ais.repeat_rows(x, chains + 1)
    z0 = torch.randn(len(x_rep), 2, generator=gen)
    result = ais.run_ais(lambda v: WIDE.log_lik(x_rep, v), z0, betas, settings, gen)
    log_w = result.log_w[: chains * 4].view(chains, 4)
    estimate = torch.logsumexp(log_w, 0) - math.log(chains)
    w = torch.exp(log_w - log_w.max(0).values)
    se = w.std(0) / (w.mean(0) * math.sqrt(chains))
    assert bool(((estimate - WIDE.log_marginal(x)).abs() < 4 * se + 0.005).all()), (estimate - WIDE.log_marginal(x), se)


def test_the_estimate_does_not_depend_on_the_initial_step() -> None:
    small, _ = mean_se(errors(NARROW, ais.AISSettings(steps=400, leapfrog=1, chains=8, step_size=0.01)))
    large, _ = mean_se(errors(NARROW, ais.AISSettings(steps=400, leapfrog=1, chains=8, step_size=1.0)))
    assert abs(small - large) < 0.3


def test_bdmc_brackets_the_truth_and_the_gap_shrinks_with_more_distributions() -> None:
    def bracket(steps: int) -> tuple[float, float, float]:
        gen = torch.Generator().manual_seed(4)
        settings = ais.AISSettings(steps=steps, leapfrog=1, chains=4)
        x, lower, upper = ais.bdmc(
            NARROW.log_lik, NARROW.sample_given_latent, 5, 24, settings, gen, torch.device("cpu")
        )
        truth = NARROW.log_marginal(x)
        return float((lower - truth).mean()), float((upper - truth).mean()), float((upper - lower).mean())

    lo_short, hi_short, gap_short = bracket(20)
    lo_long, hi_long, gap_long = bracket(800)
    assert lo_short < 0 < hi_short and lo_long < 0.05 and hi_long > -0.05
    assert gap_short > 2.0 and gap_long < 0.8


def test_pilot_alone_sets_the_steps_and_reverse_reuses_them() -> None:
    """The measured chains' states never reach the step sizes (so their weights stay unbiased)."""
    x = NARROW.data(6, seed=7)
    settings = ais.AISSettings(steps=50, leapfrog=1, chains=3, pilot_chains=1)
    betas = ais.make_schedule(NARROW.log_lik, x, 5, settings, torch.Generator().manual_seed(0))
    x_rep = ais.repeat_rows(x, 4)
    z0 = torch.randn(24, 5, generator=torch.Generator().manual_seed(1))
    moved = z0.clone()
    moved[:18] += 3.0  # the measured chains start elsewhere; the pilot rows (last 6) do not

    def run(z: torch.Tensor) -> ais.AISResult:
        return ais.run_ais(lambda v: NARROW.log_lik(x_rep, v), z, betas, settings, torch.Generator().manual_seed(2))

    a, b = run(z0), run(moved)
    assert torch.equal(a.step_sizes, b.step_sizes)
    assert not torch.equal(a.log_w[:18], b.log_w[:18])
    assert a.step_sizes.shape == (49, 6) and bool((a.step_sizes[-1] < 0.2 * a.step_sizes[0]).all())  # it adapted
    fixed = ais.run_ais(lambda v: NARROW.log_lik(x_rep, v), z0, betas, settings, None, step_sizes=a.step_sizes)
    assert torch.equal(fixed.step_sizes, a.step_sizes)


def test_the_annealing_loop_never_reads_a_device_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """No per-step host sync: no tensor is turned into a python number or truth value inside `run_ais`."""
    x = WIDE.data(4, seed=3)
    settings = ais.AISSettings(steps=10, chains=2)
    betas = ais.make_schedule(WIDE.log_lik, x, 2, settings, None)
    x_rep = ais.repeat_rows(x, 3)
    z0 = torch.randn(12, 2)

    def refuse(*args: object) -> None:
        raise AssertionError("host sync inside the annealing loop")

    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    result = ais.run_ais(lambda v: WIDE.log_lik(x_rep, v), z0, betas, settings, None)
    monkeypatch.undo()
    assert torch.isfinite(result.log_w).all()


def test_schedules_run_from_zero_to_one() -> None:
    sigmoid = ais.sigmoid_schedule(100)
    assert sigmoid[0] == 0 and sigmoid[-1] == 1 and len(sigmoid) == 101
    assert bool((sigmoid.diff() > 0).all()) and float(sigmoid.diff()[0]) < float(sigmoid.diff()[50])
    start = torch.tensor([1e-6, 1e-3])
    geo = ais.geometric_schedule(100, start, linear_share=0.25)
    assert geo.shape == (101, 2) and bool((geo[0] == 0).all()) and bool((geo[-1] == 1).all())
    torch.testing.assert_close(geo[1], start.double())
    assert bool((geo.diff(dim=0) >= 0).all())
    pure = ais.geometric_schedule(100, start)
    ratios = pure[2:] / pure[1:-1]
    torch.testing.assert_close(ratios, ratios[:1].expand_as(ratios))  # even steps in log b
    assert int((geo[1:, 0] > 0.5).sum()) > int((pure[1:, 0] > 0.5).sum()) + 10  # the linear share sits high
    assert ais.geometric_schedule(1, start).tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_geometric_start_scales_with_the_likelihood() -> None:
    settings = ais.AISSettings(steps=1000)
    sharp = ais.geometric_start(NARROW.log_lik, NARROW.data(8, 0), 5, settings, torch.Generator().manual_seed(0))
    broad = ais.geometric_start(WIDE.log_lik, WIDE.data(8, 0), 2, settings, torch.Generator().manual_seed(0))
    assert bool((sharp < 1e-4).all()) and bool((broad > 10 * sharp.max()).all())
    assert bool((broad <= 1 / 1000).all())


# ----------------------------------------------------------------------------- the DBM's AIS log Z


def test_dbm_style_ais_log_partition_is_unbiased_against_enumeration() -> None:
    """An RBM with 8 + 5 units (2^13 states), far from uniform: the mean of many short AIS runs is the truth."""
    gen = torch.Generator().manual_seed(0)
    weight = 1.5 * torch.randn(8, 5, generator=gen, dtype=torch.float64)
    bias_y, bias_x = torch.randn(8, generator=gen).double(), torch.randn(5, generator=gen).double()
    states_y = torch.tensor(list(itertools.product([0.0, 1.0], repeat=8)), dtype=torch.float64)
    states_x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)), dtype=torch.float64)
    energy = states_y @ weight @ states_x.T + (states_y @ bias_y)[:, None] + (states_x @ bias_x)[None]
    log_z = float(torch.logsumexp(energy.flatten(), 0))
    estimates = [ais_log_partition(weight, bias_y, bias_x, torch.zeros(8), 400, 50, gen)[0] for _ in range(8)]
    est = torch.tensor(estimates)
    # 50 distributions: short enough that a wrong weight order shows, long enough that the log-mean-exp over
    # 400 runs is within a few hundredths of the truth
    assert abs(float(est.mean()) - log_z) < 4 * float(est.std() / math.sqrt(len(est))) + 0.05
