"""Annealed importance sampling (AIS) with adaptive HMC transitions for decoder-based models, and BDMC.

The pure core behind the `ais` likelihood method (genbench/metrics/likelihood.py holds the adapters).
For a decoder with prior `p(z) = N(0, I)` and an observation model `p(x|z)`, AIS anneals along the
geometric path `f_b(z) = p(z) p(x|z)^b` from the prior (`b = 0`, normaliser 1) to the unnormalised
posterior (`b = 1`, normaliser `p(x)`); the importance weight of one chain is an unbiased estimate of
`p(x)`, so its log (and the log-mean-exp over chains) is a stochastic lower bound on `log p(x)`.
Run in reverse from an exact posterior sample, the same weights estimate `1 / p(x)` and give a
stochastic upper bound: on data simulated from the model, where `(x, z)` are a joint sample, the two
runs bracket the truth (bidirectional Monte Carlo).

What converges, measured on a pPCA decoder with an exact `log p(x)` (`genbench validate`):

* **The schedule.** Wu et al.'s sigmoid schedule starts at `b_1 ~ 0.15 / T`; with `T = 200` that first step,
  importance sampling from the prior, is already far too long when the likelihood is sharp (2 nats lost with
  *exact* transitions on the pPCA). The default schedule here starts at `b_1` chosen per example,
  `start_spread / std(log p(x|z))` over `START_PROBES` fresh prior draws (so the first step's log weights spread
  by about `start_spread` nats whatever the scale of the likelihood), and spaces the others evenly in `log b`
  (a posterior whose precision grows like `b` makes every such step about as hard: the thermodynamic length is
  flat in `log b`), except a `linear_share` spaced evenly in `b`, for models whose log-likelihood still varies
  near `b = 1` (on the digits VAE `b sd(log p(x|z))` grew 30-fold toward `b = 1`; a share of 0.5 cut its
  BDMC gap from 0.83 to 0.61 nats and left the pPCA's error where it was).
* **The step size.** Wu et al. steer one step by x1.02 / x0.98 per distribution from a fixed start; the posterior
  narrows far faster than that, so most distributions are crossed with a step that barely moves and the estimate
  depends on the initial step. Here every example has its own step, set anew at every distribution by a
  **pilot chain**: after each transition the pilot's log step moves by `adapt_rate * (a - target_accept)`, `a =
  min(1, exp(-dH))` its Metropolis acceptance probability (constant-gain Robbins-Monro on the log step, which
  tracks a moving target; the continuous `a` is far less noisy than the accept indicator).
* **Validity.** The measured chains take the pilot's step and never use their own history: their transitions
  are fixed given the pilot and the schedule's probes, whose randomness is independent of theirs, so every
  chain's weight stays an exactly unbiased estimate of `p(x)` (a chain steered by its own past is, strictly,
  not) and the bounds stay bounds. The reverse chains of BDMC reuse the forward run's schedule and steps.
* **The budget.** At a fixed number of gradient evaluations, more distributions beat more leapfrog steps on
  the pPCA (1,000 x 1 leapfrog is 0.1-0.2 nats off, 500 x 2 is 0.5, 200 x 5 is 1.5); on the digits VAE 500 x 2
  left a smaller BDMC gap than 1,000 x 1 (0.48 against 0.61 nats), so `leapfrog` stays a knob. Each
  transition's step is jittered by up to `STEP_JITTER` so no trajectory length resonates with a period of the
  target (Neal 2011, 5.4.2.2), and no transition is run at `b = 1`, where no weight depends on it.

All chains of all examples run as one batch, the noise is drawn on the device (`genbench.model.randn/rand`), and
nothing in the annealing loop waits for the device (no `float()` of a device tensor).

References:
    Neal 2001, "Annealed importance sampling"; Neal 2011, "MCMC using Hamiltonian dynamics".
    Grosse, Ghahramani, Adams 2015, "Sandwiching the marginal likelihood using bidirectional Monte Carlo".
    Wu, Burda, Salakhutdinov, Grosse 2017, "On the Quantitative Analysis of Decoder-Based Generative
        Models": sigmoidal schedule (their section 6.2, radius 4), HMC with 10 leapfrog steps, 16 chains.
    Andrieu & Thoms 2008, "A tutorial on adaptive MCMC" (Robbins-Monro step-size control).
    Gelman & Meng 1998, "Simulating normalizing constants" (path sampling, thermodynamic length).
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

SCHEDULES = ("geometric", "sigmoid")
SIGMOID_RADIUS = 4.0
START_PROBES = 16  # prior draws per example that set the geometric schedule's first inverse temperature
START_MIN = 1e-12  # the geometric start's floor (a likelihood that is -inf or NaN somewhere under the prior)
STEP_MIN, STEP_MAX = 1e-5, 10.0  # a safety range for the adapted step; the adaptation itself stays far inside
STEP_JITTER = 0.2  # each transition uses step * U(1 - jitter, 1 + jitter)


@dataclass(frozen=True)
class AISSettings:
    """Protocol of one AIS run.

    Attributes:
        steps: number of annealing steps (intermediate distributions, `T`).
        leapfrog: leapfrog steps per HMC transition.
        step_size: the pilot's initial HMC step size (at `b` near 0, where the target is about the prior).
        target_accept: acceptance probability the step size is steered toward.
        chains: independent measured chains per example.
        adapt_rate: change of the log step per unit of acceptance error, per distribution.
        pilot_chains: chains per example that steer the step size (their weights are not used).
        schedule: `geometric` (per-example start, see the module docstring) or `sigmoid` (Wu et al.).
        start_spread: the geometric schedule's first step spreads the log weights by about this many nats.
        linear_share: the share of the geometric schedule's distributions spaced evenly in `b`, not `log b`.
    """

    steps: int
    leapfrog: int = 1
    step_size: float = 0.5
    target_accept: float = 0.65
    chains: int = 16
    adapt_rate: float = 0.5
    pilot_chains: int = 1
    schedule: str = "geometric"
    start_spread: float = 0.1
    linear_share: float = 0.5

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown AIS schedule {self.schedule!r}; accepted: {', '.join(SCHEDULES)}")
        if self.steps < 1 or self.leapfrog < 1 or self.chains < 1 or self.pilot_chains < 1:
            raise ValueError(f"AIS needs steps, leapfrog, chains and pilot_chains >= 1; got {self}")

    def protocol(self) -> dict[str, object]:
        """The fields every AIS metric records about how it was run."""
        if self.schedule == "sigmoid":
            schedule = f"sigmoid(radius={SIGMOID_RADIUS:g})"
        else:
            schedule = (
                f"geometric(start = {self.start_spread:g} / std of log p(x|z) over {START_PROBES} prior draws; "
                f"{self.linear_share:g} of the distributions even in b, the rest even in log b)"
            )
        return {
            "schedule": schedule,
            "steps": self.steps,
            "chains": self.chains,
            "leapfrog": self.leapfrog,
            "step_control": "per example, by a pilot chain: Robbins-Monro on log step toward target_accept",
            "initial_step_size": self.step_size,
            "target_accept": self.target_accept,
            "adapt_rate": self.adapt_rate,
            "pilot_chains": self.pilot_chains,
            "step_jitter": STEP_JITTER,
        }


@dataclass
class AISResult:
    """One annealing run over `N = blocks x B` rows (row `c * B + b` is chain `c` of example `b`).

    Attributes:
        log_w: per-row log weights `(N,)`, float64.
        z: final states `(N, d)`.
        accept: per-row mean acceptance probability over the transitions `(N,)`.
        step_sizes: the step size of every example at every transition `(T - 1, B)` (before the jitter).
    """

    log_w: torch.Tensor
    z: torch.Tensor
    accept: torch.Tensor
    step_sizes: torch.Tensor


@dataclass
class AISEstimate:
    """Per-example forward AIS estimates with what a record states about the run.

    Attributes:
        log_p: log-mean-exp of the measured chains' weights per example `(B,)`, float64.
        betas: the schedule of every example `(T + 1, B)`, float64; BDMC's reverse run reuses it.
        step_sizes: the pilot's steps `(T - 1, B)`; BDMC's reverse run reuses them.
        accept: mean acceptance probability of the measured chains per example `(B,)`.
    """

    log_p: torch.Tensor
    betas: torch.Tensor
    step_sizes: torch.Tensor
    accept: torch.Tensor

    def examples(self, rows: slice) -> AISEstimate:
        """The estimate restricted to some of its examples."""
        return AISEstimate(self.log_p[rows], self.betas[:, rows], self.step_sizes[:, rows], self.accept[rows])

    def summary(self) -> dict[str, float]:
        """Final step sizes, the schedule's start and the acceptance, over examples (host floats: once, at the end)."""
        final = self.step_sizes[-1] if len(self.step_sizes) else torch.full_like(self.log_p, float("nan"))
        start = self.betas[1]
        return {
            "final_step_size_mean": float(final.mean()),
            "final_step_size_min": float(final.min()),
            "final_step_size_max": float(final.max()),
            "schedule_start_median": float(start.median()),
            "accept_rate": float(self.accept.mean()),
        }


def sigmoid_schedule(steps: int, radius: float = SIGMOID_RADIUS) -> torch.Tensor:
    """Inverse temperatures `0 = b_0 < ... < b_T = 1`, dense near both ends (Wu et al. 2017, 6.2).

    `b_t = (s(r (2t/T - 1)) - s(-r)) / (s(r) - s(-r))` with `s` the logistic sigmoid; shape `(T + 1,)`.
    """
    if steps < 1:
        raise ValueError(f"AIS needs at least one step; got steps={steps}")
    gamma = torch.sigmoid(torch.linspace(-radius, radius, steps + 1, dtype=torch.float64))
    return (gamma - gamma[0]) / (gamma[-1] - gamma[0])


def geometric_schedule(steps: int, start: torch.Tensor, linear_share: float = 0.0) -> torch.Tensor:
    """`b_0 = 0`, then `b_1 = start < ... < b_T = 1`, one column per example, float64 `(T + 1, B)`.

    `round(linear_share * T)` of the inverse temperatures are spaced evenly in `b` between `start` and 1, the
    others evenly in `log b` (the union, sorted): the density of the schedule is `a / b + c`. Even steps in `log b`
    suit a posterior whose precision grows like `b` (a Gaussian decoder); a decoder whose log-likelihood still
    varies near `b = 1` (a VAE's discretized likelihood) wants the linear share there. With `T = 1` the
    schedule is just `0, 1`: importance sampling from the prior.
    """
    start = start.double()
    examples, device = len(start), start.device
    if steps == 1:
        return torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)[:, None].expand(-1, examples).contiguous()
    n_linear = min(int(round(linear_share * steps)), steps - 2)
    frac = torch.linspace(1.0, 0.0, steps - n_linear, dtype=torch.float64, device=device)  # exponent of start
    points = torch.exp(frac[:, None] * torch.log(start)[None])  # (T - n_linear, B), from start to 1
    if n_linear:
        even = torch.arange(1, n_linear + 1, dtype=torch.float64, device=device)[:, None] / (n_linear + 1)
        points = torch.cat([points, start + (1.0 - start) * even]).sort(dim=0).values  # (T, B)
    return torch.cat([torch.zeros(1, examples, dtype=torch.float64, device=device), points])


def geometric_start(
    obs: ObsModel, x: torch.Tensor, latent_dim: int, settings: AISSettings, generator: torch.Generator | None
) -> torch.Tensor:
    """The first inverse temperature per example `(B,)`: `start_spread / std(log p(x|z))`, `z` from the prior.

    Capped at `1 / steps` (a weak likelihood gets an even spread) and floored at `START_MIN`.
    """
    x_rep = repeat_rows(x, START_PROBES)
    z = randn((len(x_rep), latent_dim), generator, x.device)
    with torch.no_grad():
        ll = obs(x_rep, z).double().view(START_PROBES, len(x))  # (K, B)
    spread = torch.nan_to_num(ll.std(0), nan=math.inf)  # -inf or NaN somewhere: as sharp as can be
    return (settings.start_spread / spread).clamp(START_MIN, 1.0 / settings.steps)


def make_schedule(
    obs: ObsModel, x: torch.Tensor, latent_dim: int, settings: AISSettings, generator: torch.Generator | None
) -> torch.Tensor:
    """The schedule of every example `(T + 1, B)`, float64, on `x`'s device."""
    if settings.schedule == "sigmoid":
        return sigmoid_schedule(settings.steps).to(x.device)[:, None].expand(-1, len(x)).contiguous()
    start = geometric_start(obs, x, latent_dim, settings, generator)
    return geometric_schedule(settings.steps, start, settings.linear_share)


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
    beta: torch.Tensor,
    eps: torch.Tensor,
    leapfrog: int,
    generator: torch.Generator | None,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """One HMC transition leaving `p(z) p(x|z)^beta` invariant, with an inverse temperature and step per row.

    Args:
        log_lik: `z -> log p(x|z)` per row.
        state: `(z, log p(x|z), grad)` at the current point; shapes `(N, d)`, `(N,)`, `(N, d)`.
        beta: inverse temperatures of the targets `(N,)`.
        eps: step sizes `(N,)`.
        leapfrog: number of leapfrog steps.
        generator: source of the momentum and the accept test.

    Returns:
        The new state (the proposal where accepted) and the Metropolis acceptance probability `(N,)`
        (0 for a diverged trajectory, which is always rejected).
    """
    z0, ll0, g0 = state
    step, b = eps[:, None], beta[:, None]  # (N, 1): broadcast over latent dimensions

    def grad_energy(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return z - b * g  # energy U = |z|^2 / 2 - beta log p(x|z)

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
    prob = torch.exp((h0 - h1).clamp(max=0.0)).nan_to_num(0.0)  # min(1, e^-dH); NaN or +inf energy -> 0
    accept = rand((len(z0),), generator, z0.device) < prob
    keep = accept[:, None]
    new = (torch.where(keep, z, z0), torch.where(accept, ll, ll0), torch.where(keep, g, g0))
    return new, prob


def run_ais(
    log_lik: LogLik,
    z0: torch.Tensor,
    betas: torch.Tensor,
    settings: AISSettings,
    generator: torch.Generator | None,
    step_sizes: torch.Tensor | None = None,
    desc: str = "ais",
) -> AISResult:
    """Anneal chains started at `z0` along `betas`; `log_w = sum_t (b_t - b_{t-1}) log p(x | z_{t-1})`.

    Increasing `betas` (prior to posterior, `z0` from the prior) estimate `log p(x)` from below;
    decreasing `betas` (posterior to prior, `z0` an exact posterior sample) give `log_w` whose
    log-mean-exp estimates `-log p(x)` from below, i.e. an upper bound on `log p(x)`.

    Args:
        log_lik: `z -> log p(x|z)` per row, rows laid out chain-major (`c * B + b`).
        z0: initial states `(N, d)`, `N` a multiple of the number of examples `B`.
        betas: the schedule of every example `(T + 1, B)`.
        settings: `leapfrog`, and for adapted steps `step_size`, `adapt_rate`, `target_accept`, `pilot_chains`.
        generator: source of all randomness.
        step_sizes: `(T - 1, B)` fixed steps, one per transition and example (the reverse run of BDMC); None
            adapts them, with the last `settings.pilot_chains` blocks of rows as the pilots.
        desc: progress bar label.

    Returns:
        The weights, final states, acceptance and the steps used.
    """
    n_rows, device = len(z0), z0.device
    examples = betas.shape[1]
    blocks = n_rows // examples
    betas = betas.to(device)
    d_beta, beta32 = betas.diff(dim=0), betas.float()  # (T, B) float64 for the weights, float32 for the dynamics
    transitions = len(betas) - 2  # at b_1 .. b_{T-1}; none at b_T, on which no weight depends
    adaptive = step_sizes is None
    if adaptive:
        if settings.pilot_chains >= blocks:
            raise ValueError(f"need fewer than {blocks} pilot chains per example; got {settings.pilot_chains}")
        pilot_rows = slice((blocks - settings.pilot_chains) * examples, n_rows)
        log_step = torch.full((examples,), math.log(settings.step_size), device=device)
        step_sizes = torch.empty(max(transitions, 0), examples, device=device)
    state = (z0, *lik_and_grad(log_lik, z0))
    log_w = torch.zeros(blocks, examples, dtype=torch.float64, device=device)
    accept_sum = torch.zeros(n_rows, device=device)
    for t in tqdm(range(1, len(betas)), desc=desc, leave=False):
        log_w += d_beta[t - 1] * state[1].double().view(blocks, examples)
        if t > transitions:
            break
        if adaptive:
            step_sizes[t - 1] = log_step.exp()
        jitter = 1.0 + STEP_JITTER * (2.0 * rand((n_rows,), generator, device) - 1.0)
        eps = step_sizes[t - 1].repeat(blocks) * jitter  # (N,): chain c of example b takes example b's step
        state, prob = hmc_step(log_lik, state, beta32[t].repeat(blocks), eps, settings.leapfrog, generator)
        accept_sum += prob
        if adaptive:
            pilot_accept = prob[pilot_rows].view(-1, examples).mean(0)  # (B,)
            log_step = (log_step + settings.adapt_rate * (pilot_accept - settings.target_accept)).clamp(
                math.log(STEP_MIN), math.log(STEP_MAX)
            )
    return AISResult(log_w.flatten(), state[0], accept_sum / max(transitions, 1), step_sizes)


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
) -> AISEstimate:
    """Forward AIS estimate of `log p(x)` per example `(B,)`: a stochastic lower bound, float64.

    `settings.chains` measured chains and `settings.pilot_chains` pilots per example run in one batch.
    """
    betas = make_schedule(obs, x, latent_dim, settings, generator)
    blocks, b = settings.chains + settings.pilot_chains, len(x)
    x_rep = repeat_rows(x, blocks)  # (blocks * B, ...)
    z0 = randn((len(x_rep), latent_dim), generator, x.device)
    result = run_ais(lambda z: obs(x_rep, z), z0, betas, settings, generator)
    measured = settings.chains * b
    accept = result.accept[:measured].view(settings.chains, b).mean(0)
    return AISEstimate(logmeanexp_chains(result.log_w[:measured], settings.chains), betas, result.step_sizes, accept)


def reverse_ais_log_prob(
    obs: ObsModel,
    x: torch.Tensor,
    z_exact: torch.Tensor,
    forward: AISEstimate,
    settings: AISSettings,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Reverse AIS from exact posterior samples `z_exact` `(B, d)`: a stochastic upper bound on `log p(x)`, `(B,)`.

    Every chain of an example starts from that example's one exact posterior sample and retraces the forward
    run's schedule and step sizes (`forward`, the forward estimate on the same `x`) from `b = 1` down to `0`.
    """
    x_rep, z_rep = repeat_rows(x, settings.chains), repeat_rows(z_exact, settings.chains)
    betas, steps = forward.betas.flip(0), forward.step_sizes.flip(0)
    result = run_ais(lambda z: obs(x_rep, z), z_rep, betas, settings, generator, steps, "reverse ais")
    return -logmeanexp_chains(result.log_w, settings.chains)


def simulate(
    sample_obs: ObsSampler, latent_dim: int, n: int, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` joint samples `(x, z)` of the model: `z ~ p(z)`, `x ~ p(x|z)`; `z` is an exact posterior sample of `x`."""
    z = randn((n, latent_dim), generator, device)
    with torch.no_grad():
        x = sample_obs(z, generator)
    return x.detach(), z


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
    x, z = simulate(sample_obs, latent_dim, n, generator, device)
    forward = ais_log_prob(obs, x, latent_dim, settings, generator)
    upper = reverse_ais_log_prob(obs, x, z, forward, settings, generator)
    return x, forward.log_p, upper
