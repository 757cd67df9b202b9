"""Annealed importance sampling (AIS) with HMC transitions for decoder-based models, and BDMC.

The pure core behind the `ais` likelihood method (genbench/metrics/likelihood.py holds the adapters).
For a decoder with prior `p(z) = N(0, I)` and an observation model `p(x|z)`, AIS anneals along the
geometric path `f_b(z) = p(z) p(x|z)^b` from the prior (`b = 0`, normaliser 1) to the unnormalised
posterior (`b = 1`, normaliser `p(x)`); the importance weight of one chain is an unbiased estimate of
`p(x)`, so its log (and the log-mean-exp over chains) is a stochastic lower bound on `log p(x)`.
Run in reverse from an exact posterior sample, the same weights estimate `1 / p(x)` and give a
stochastic upper bound: on data simulated from the model, where `(x, z)` are a joint sample, the two
runs bracket the truth (bidirectional Monte Carlo).

References:
    Neal 2001, "Annealed importance sampling"; Neal 2011, "MCMC using Hamiltonian dynamics".
    Grosse, Ghahramani, Adams 2015, "Sandwiching the marginal likelihood using bidirectional Monte Carlo".
    Wu, Burda, Salakhutdinov, Grosse 2017, "On the Quantitative Analysis of Decoder-Based Generative
        Models": sigmoidal schedule (their section 6.2, radius 4), HMC with 10 leapfrog steps, step size
        adapted multiplicatively (x1.02 / x0.98, clipped to [1e-4, 0.5]) toward a 0.65 acceptance
        rate tracked by a moving average (weight 0.9 on the past), 16 chains.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from genbench.model import rand, randn

LogLik = Callable[[torch.Tensor], torch.Tensor]  # z (N, d) -> log p(x|z) (N,), with x fixed inside
ObsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (N, ...), z (N, d)) -> (N,)
ObsSampler = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]  # (z, generator) -> x ~ p(x|z)

STEP_INC, STEP_DEC = 1.02, 0.98
STEP_MIN, STEP_MAX = 1e-4, 0.5
ACCEPT_SLOWNESS = 0.9


@dataclass(frozen=True)
class AISSettings:
    """Protocol sizes of one AIS run.

    Attributes:
        steps: number of annealing steps (intermediate distributions, `T`).
        leapfrog: leapfrog steps per HMC transition.
        step_size: initial HMC step size.
        target_accept: acceptance rate the step size is steered toward.
        chains: independent chains per example.
    """

    steps: int
    leapfrog: int = 10
    step_size: float = 0.01
    target_accept: float = 0.65
    chains: int = 16


@dataclass
class AISResult:
    """Per-chain log weights `(N,)` (float64), the final states `(N, d)` and the mean HMC acceptance rate."""

    log_w: torch.Tensor
    z: torch.Tensor
    accept_rate: float


def sigmoid_schedule(steps: int, radius: float = 4.0) -> torch.Tensor:
    """Inverse temperatures `0 = b_0 < ... < b_T = 1`, dense near both ends (Wu et al. 2017, 6.2).

    `b_t = (s(r (2t/T - 1)) - s(-r)) / (s(r) - s(-r))` with `s` the logistic sigmoid; shape `(T + 1,)`.
    """
    if steps < 1:
        raise ValueError(f"AIS needs at least one step; got steps={steps}")
    gamma = torch.sigmoid(torch.linspace(-radius, radius, steps + 1, dtype=torch.float64))
    return (gamma - gamma[0]) / (gamma[-1] - gamma[0])


def log_normal(z: torch.Tensor) -> torch.Tensor:
    """Log density of the standard normal prior per row, `(N, d) -> (N,)`."""
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def lik_and_grad(log_lik: LogLik, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`log p(x|z)` and its gradient with respect to `z` only (no parameter gradients are kept)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        ll = log_lik(z)
        (grad,) = torch.autograd.grad(ll.sum(), z)
    return ll.detach(), grad.detach()


def hmc_step(
    log_lik: LogLik,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    beta: float,
    eps: torch.Tensor,
    leapfrog: int,
    generator: torch.Generator | None,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """One HMC transition leaving `p(z) p(x|z)^beta` invariant, with a per-chain step size.

    Args:
        log_lik: `z -> log p(x|z)` per chain.
        state: `(z, log p(x|z), grad)` at the current point; shapes `(N, d)`, `(N,)`, `(N, d)`.
        beta: inverse temperature of the target.
        eps: step sizes `(N,)`.
        leapfrog: number of leapfrog steps.
        generator: source of the momentum and the accept test.

    Returns:
        The new state (the proposal where accepted) and the accept indicator `(N,)` (bool).
    """
    z0, ll0, g0 = state
    step = eps[:, None]  # (N, 1): broadcast over latent dimensions

    def grad_energy(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return z - beta * g  # energy U = |z|^2 / 2 - beta log p(x|z)

    p0 = randn(tuple(z0.shape), generator, z0.device)
    z, ll, g = z0, ll0, g0
    p = p0 - 0.5 * step * grad_energy(z, g)
    for i in range(leapfrog):
        z = z + step * p
        ll, g = lik_and_grad(log_lik, z)
        if i < leapfrog - 1:
            p = p - step * grad_energy(z, g)
    p = p - 0.5 * step * grad_energy(z, g)
    h0 = 0.5 * (z0**2).sum(1) - beta * ll0 + 0.5 * (p0**2).sum(1)
    h1 = 0.5 * (z**2).sum(1) - beta * ll + 0.5 * (p**2).sum(1)
    log_u = torch.log(rand((len(z0),), generator, z0.device))
    accept = (log_u < h0 - h1) & torch.isfinite(h1)  # a diverged trajectory is rejected
    keep = accept[:, None]
    new = (torch.where(keep, z, z0), torch.where(accept, ll, ll0), torch.where(keep, g, g0))
    return new, accept


def run_ais(
    log_lik: LogLik,
    z0: torch.Tensor,
    betas: torch.Tensor,
    settings: AISSettings,
    generator: torch.Generator | None,
    desc: str = "ais",
) -> AISResult:
    """Anneal chains started at `z0` along `betas`; `log_w = sum_t (b_t - b_{t-1}) log p(x | z_{t-1})`.

    Increasing `betas` (prior to posterior, `z0` from the prior) estimate `log p(x)` from below;
    decreasing `betas` (posterior to prior, `z0` an exact posterior sample) give `log_w` whose
    log-mean-exp estimates `-log p(x)` from below, i.e. an upper bound on `log p(x)`.
    """
    state = (z0, *lik_and_grad(log_lik, z0))
    log_w = torch.zeros(len(z0), dtype=torch.float64, device=z0.device)
    eps = torch.full((len(z0),), settings.step_size, device=z0.device)
    avg_accept = torch.full((len(z0),), settings.target_accept, device=z0.device)
    accepted = 0.0
    for t in tqdm(range(1, len(betas)), desc=desc, leave=False):
        log_w += float(betas[t] - betas[t - 1]) * state[1].double()
        state, accept = hmc_step(log_lik, state, float(betas[t]), eps, settings.leapfrog, generator)
        # Step-size control as Wu et al.: grow while the running acceptance is above target, else shrink.
        avg_accept = ACCEPT_SLOWNESS * avg_accept + (1 - ACCEPT_SLOWNESS) * accept.float()
        factor = torch.where(avg_accept > settings.target_accept, STEP_INC, STEP_DEC)
        eps = (eps * factor).clamp(STEP_MIN, STEP_MAX)
        accepted += float(accept.float().mean())
    return AISResult(log_w, state[0], accepted / max(len(betas) - 1, 1))


def repeat_rows(x: torch.Tensor, times: int) -> torch.Tensor:
    """`(B, ...) -> (times * B, ...)`, row `c * B + b` a copy of row `b` (chain `c` of example `b`)."""
    return x.repeat(times, *([1] * (x.dim() - 1)))


def logmeanexp_chains(log_w: torch.Tensor, chains: int) -> torch.Tensor:
    """Combine `(chains * B,)` chain log weights into per-example estimates `(B,)`."""
    return torch.logsumexp(log_w.view(chains, -1), dim=0) - math.log(chains)  # (C, B) -> (B,)


def ais_log_prob(
    obs: ObsModel,
    x: torch.Tensor,
    latent_dim: int,
    settings: AISSettings,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, float]:
    """Forward AIS estimate of `log p(x)` per example `(B,)` (a stochastic lower bound) and the acceptance rate."""
    x_rep = repeat_rows(x, settings.chains)  # (C*B, ...)
    z0 = randn((len(x_rep), latent_dim), generator, x.device)
    result = run_ais(lambda z: obs(x_rep, z), z0, sigmoid_schedule(settings.steps), settings, generator)
    return logmeanexp_chains(result.log_w, settings.chains), result.accept_rate


def reverse_ais_log_prob(
    obs: ObsModel,
    x: torch.Tensor,
    z_exact: torch.Tensor,
    settings: AISSettings,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Reverse AIS from exact posterior samples `z_exact` `(B, d)`: a stochastic upper bound on `log p(x)`, `(B,)`.

    Every chain of an example starts from that example's one exact posterior sample.
    """
    x_rep, z_rep = repeat_rows(x, settings.chains), repeat_rows(z_exact, settings.chains)
    betas = sigmoid_schedule(settings.steps).flip(0)
    result = run_ais(lambda z: obs(x_rep, z), z_rep, betas, settings, generator, desc="reverse ais")
    return -logmeanexp_chains(result.log_w, settings.chains)


def bdmc(
    obs: ObsModel,
    sample_obs: ObsSampler,
    latent_dim: int,
    n: int,
    settings: AISSettings,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bidirectional Monte Carlo on `n` examples simulated from the model.

    Returns:
        The simulated data `(n, ...)`, the forward (lower) and the reverse (upper) estimates `(n,)`.
    """
    z = randn((n, latent_dim), generator, device)
    x = sample_obs(z, generator).detach()
    lower, _ = ais_log_prob(obs, x, latent_dim, settings, generator)
    upper = reverse_ais_log_prob(obs, x, z, settings, generator)
    return x, lower, upper
