"""A generative stochastic network: a denoising auto-encoder trained with walkback, sampled by its Markov chain.

Papers:
    Bengio, Yao, Alain & Vincent 2013, "Generalized Denoising Auto-Encoders as Generative Models" (NeurIPS):
        the chain `x -> corrupt -> sample P(x | x~) -> corrupt -> ...` of a trained DAE samples the data
        distribution; walkback training visits the spurious modes that chain would wander into.
    Bengio, Thibodeau-Laufer, Alain & Yosinski 2014, "Deep Generative Stochastic Networks Trainable by
        Backprop" (ICML): the same chain as a GSN, noise injected in the hidden layers as well, and the
        unrolled walkback chain trained end to end by back-propagation.

Here the GSN's state is the visible `x` (the latent state of the 2014 paper is the corrupted `x~` plus the
noisy hidden layers of one MLP). Images: `P(x | x~)` is a factorized binomial over the data's `L` grey levels,
`x = k / (L - 1)` with `k ~ Binomial(L - 1, sigmoid(logit))` (its log-likelihood is `L - 1` times the
cross-entropy with soft targets, plus a constant), and the chain moves to a draw from it, as Bengio et al.'s
chain does; carrying the reconstruction means instead (`state="mean"`) leaves the corruption as the only
randomness and the chain stalls in a few blurred modes (validation recall 0.19-0.28 against 0.43-0.73 with
draws: results/benchmarks/gsn_noise_selection.md). Toy 2-D data: `P(x | x~)` is a Gaussian with a learned
per-dimension scale, and the chain samples from it. The default corruption is Gaussian on both; on digits it
beat salt-and-pepper (the 2014 paper's choice for MNIST) on the validation split, same benchmark.
The model has no likelihood of its own; the likelihood module gives it a Parzen-window estimate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from genbench.model import GenerativeModel, rand, randn

NOISES = ("auto", "salt_pepper", "gaussian")
STATES = ("sample", "mean")


def corrupt(x: torch.Tensor, noise: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The corruption `C(x~ | x)`.

    `salt_pepper`: each value, with probability `level`, is replaced by 0 or 1 (equally likely);
    `gaussian`: `x + level * N(0, 1)`.
    """
    if noise == "gaussian":
        return x + level * randn(tuple(x.shape), generator, x.device)
    hit = rand(tuple(x.shape), generator, x.device) < level
    salt = (rand(tuple(x.shape), generator, x.device) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


BINOMIAL_CHUNK = 16  # trials per inverse-CDF pass of `binomial_draw`


def binomial_draw(p: torch.Tensor, trials: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact `Binomial(trials, p)` counts, elementwise, as float: a sum of inverse-CDF draws of at most 16 trials.

    Elementwise ops only (no `torch.binomial`, which has no meta, bf16 or compile kernels), in `p`'s dtype with no
    underflow: the success probability is folded to `q = min(p, 1 - p) <= 1/2`, so a chunk's first term
    `(1 - q)^m >= 2^-16`, and the pmf `pmf_k = pmf_0 prod_(j<k) (m - j) / (j + 1) q / (1 - q)` stays below 2^16
    times it. Each chunk takes one uniform per element and a handful of ops on a (..., m) pmf, so a small batch
    pays few op launches.
    """
    flip = p > 0.5
    q = torch.where(flip, 1.0 - p, p)
    ratio = (q / (1.0 - q)).unsqueeze(-1)
    count = torch.zeros_like(p)
    for start in range(0, trials, BINOMIAL_CHUNK):
        m = min(BINOMIAL_CHUNK, trials - start)
        j = torch.arange(m - 1, device=p.device, dtype=p.dtype)
        growth = torch.cat([torch.ones_like(ratio), (ratio * ((m - j) / (j + 1))).cumprod(-1)], dim=-1)  # (..., m)
        cdf = (growth * ((1.0 - q) ** m).unsqueeze(-1)).cumsum(-1)  # CDF(k) for k < m; CDF(m) = 1
        u = rand(tuple(p.shape), generator, p.device).to(p.dtype)
        count += (cdf < u.unsqueeze(-1)).sum(-1)  # the draw is the number of k < m with CDF(k) < u
    return torch.where(flip, trials - count, count)


class DenoisingMLP(nn.Module):
    """`x~ -> parameters of P(x | x~)`: an MLP with Gaussian noise added to each hidden pre-activation."""

    def __init__(self, dim: int, hidden_dim: int, depth: int, hidden_noise: float) -> None:
        super().__init__()
        sizes = [dim] + [hidden_dim] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.out = nn.Linear(hidden_dim, dim)
        self.hidden_noise = hidden_noise

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h = x
        for layer in self.hidden:
            pre = layer(h)
            if self.hidden_noise > 0:  # the GSN's noise in the hidden layers (Bengio et al. 2014, Sec. 4)
                pre = pre + self.hidden_noise * randn(tuple(pre.shape), generator, pre.device)
            h = torch.tanh(pre)
        return self.out(h)


class GSN(GenerativeModel):
    """Walkback-trained denoising auto-encoder whose corrupt-reconstruct chain is the sampler.

    Args:
        spec: the data (images, flattened; or toy 2-D).
        hidden_dim, depth: width and number of hidden layers of the MLP.
        noise: corruption, `salt_pepper` or `gaussian`; `auto` is Gaussian (on digits it beat salt-and-pepper
            on the validation split: results/benchmarks/gsn_noise_selection.md).
        noise_level: salt-and-pepper probability, or the Gaussian standard deviation (data units); None
            picks 0.4 for salt-and-pepper (as for MNIST in Bengio et al. 2014), and for Gaussian 0.3 on
            images (chosen on digits' validation split, same benchmark) and 0.2 on toy data.
        hidden_noise: standard deviation of the noise on the hidden pre-activations (training and sampling).
        walkback: reconstructions per training example; the loss sums their negative log-likelihoods of
            the clean `x`, back-propagated through the whole unrolled chain.
        lr: Adam learning rate.
        burn_in: chain steps discarded by `sample` before the first kept state.
        chain_length: consecutive states `sample` keeps from each chain (1: every sample its own chain).
        state: images only: the chain's next state is a draw from `P(x | x~)` (`sample`) or its mean (`mean`).
    """

    likelihood = "none"
    family = "markov_chain"
    mode_changes_samples = True
    sampling_modes = ("default", "burn10", "burn100", "burn1000")

    def __init__(
        self,
        spec: DataSpec,
        hidden_dim: int = 256,
        depth: int = 2,
        noise: str = "auto",
        noise_level: float | None = None,
        hidden_noise: float = 0.1,
        walkback: int = 3,
        lr: float = 2e-3,
        burn_in: int = 100,
        chain_length: int = 1,
        state: str = "sample",
    ) -> None:
        super().__init__(spec)
        if noise not in NOISES:
            raise GenbenchError(f"unknown GSN noise {noise!r}; accepted: {', '.join(NOISES)}")
        if state not in STATES:
            raise GenbenchError(f"unknown GSN state {state!r}; accepted: {', '.join(STATES)}")
        self.images = spec.is_image
        self.noise = "gaussian" if noise == "auto" else noise
        if self.noise == "salt_pepper" and not self.images:
            raise GenbenchError("GSN noise 'salt_pepper' needs [0, 1] images; for toy2d use noise=gaussian")
        if walkback < 1 or burn_in < 0 or chain_length < 1:
            raise GenbenchError(
                f"GSN needs walkback >= 1, burn_in >= 0, chain_length >= 1; got {walkback}, {burn_in}, {chain_length}"
            )
        if noise_level is None:
            noise_level = 0.4 if self.noise == "salt_pepper" else (0.3 if self.images else 0.2)
        self.noise_level, self.walkback, self.lr = noise_level, walkback, lr
        self.burn_in, self.chain_length, self.state = burn_in, chain_length, state
        # Binomial trials of the image P(x | x~): L - 1 for L grey levels (one, a Bernoulli, for binary data).
        self.trials = max((spec.levels or 2) - 1, 1)
        self.net = DenoisingMLP(spec.dim, hidden_dim, depth, hidden_noise)
        # Toy data: log standard deviation of the Gaussian P(x | x~), one per dimension.
        self.log_scale = nn.Parameter(torch.zeros(spec.dim), requires_grad=not self.images)

    # ------------------------------------------------------------------ one step of the chain

    def reconstruct(self, x_tilde: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Parameters of `P(x | x~)` for flat `x~` (B, D): logits (images) or means (toy data)."""
        return self.net(x_tilde, generator)

    def nll(self, x: torch.Tensor, params: torch.Tensor, fit_scale: bool = True) -> torch.Tensor:
        """`-log P(x | x~)` per example (nats), `x` flat (B, D); `fit_scale=False` holds the toy scale fixed."""
        if self.images:  # Bernoulli cross-entropy with soft targets in [0, 1]
            return F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(-1)
        log_scale = self.log_scale if fit_scale else self.log_scale.detach()
        z = (x - params) * torch.exp(-log_scale)
        return (0.5 * z**2 + log_scale + 0.5 * math.log(2 * math.pi)).sum(-1)

    def next_state(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The chain's next visible state: a draw from `P(x | x~)` (binomial on images, Gaussian on toy data), or
        on images with `state="mean"` its mean."""
        if self.images:
            p = torch.sigmoid(params)
            if self.state == "mean":
                return p
            return binomial_draw(p.detach().float(), self.trials, generator).div_(self.trials).to(p.dtype)
        return params + torch.exp(self.log_scale) * randn(tuple(params.shape), generator, params.device)

    def chain_step(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One transition: corrupt, then move to the reconstruction."""
        x_tilde = corrupt(x, self.noise, self.noise_level, generator)
        return self.next_state(self.reconstruct(x_tilde, generator), generator)

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=self.lr)}
        return self.optimizers

    def walkback_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over the batch of the summed walkback NLLs, and of the first reconstruction's NLL alone.

        Each walkback step corrupts the chain's current state and scores the reconstruction against the
        clean `x` (Bengio et al. 2013, Alg. 1; the chain is unrolled and differentiated, as in 2014).
        The toy scale of `P(x | x~)` is fitted on the first step only: fitted on the later, harder steps it
        grows, the chain's samples spread, and the walkback states drift further, a loop that blurs samples.
        """
        x0 = x.flatten(1)  # (B, D)
        state, total, first = x0, x0.new_zeros(()), None
        for _ in range(self.walkback):
            params = self.reconstruct(corrupt(state, self.noise, self.noise_level))
            nll = self.nll(x0, params, fit_scale=first is None).mean()
            first = nll if first is None else first
            total = total + nll
            state = self.next_state(params)
        return total, first

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        opt = self.optimizers["adam"]
        total, first = self.walkback_loss(x)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"loss": total.detach(), "recon_nll": first.detach()}

    # ------------------------------------------------------------------ sampling

    def initial_noise(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """Where chains start: uniform over the data's value range, flat `(n, D)`."""
        low, high = self.spec.value_range
        return low + (high - low) * rand((n, self.spec.dim), generator, self.device)

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(0.0, 1.0) if self.images else x
        return x.reshape(len(x), *self.spec.shape)

    @torch.no_grad()
    def sample_chain(
        self, n: int, lengths: list[int], generator: torch.Generator | None = None
    ) -> dict[int, torch.Tensor]:
        """States of `n` chains from noise after each requested number of steps: `{steps: (n, *shape)}`.

        One set of chains is run to `max(lengths)`, so the samples at different lengths are the same chains
        observed at different times (what FID-against-chain-length needs).
        """
        if any(k < 0 for k in lengths):
            raise ValueError(f"chain lengths must be >= 0, got {lengths}")
        x, out = self.initial_noise(n, generator), {}
        for step in range(max(lengths, default=0) + 1):
            if step in lengths:
                out[step] = self.to_data(x)
            x = self.chain_step(x, generator)
        return {k: out[k] for k in lengths}

    def network_evaluations(self, mode: str | None = None) -> int:
        """Burn-in plus the kept stretch: the chain steps before a chain's last kept state."""
        mode = self.check_mode(mode)
        burn_in = self.burn_in if mode == "default" else int(mode.removeprefix("burn"))
        return burn_in + self.chain_length

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        mode: str | None = None,
        burn_in: int | None = None,
        chain_length: int | None = None,
    ) -> torch.Tensor:
        """`n` samples: `ceil(n / chain_length)` chains from noise, `burn_in` steps discarded, then
        `chain_length` consecutive states kept from each chain. The mode `burn<k>` sets `burn_in = k`.
        """
        mode = self.check_mode(mode)
        if burn_in is None:
            burn_in = self.burn_in if mode == "default" else int(mode.removeprefix("burn"))
        chain_length = chain_length or self.chain_length
        n_chains = -(-n // chain_length)
        x = self.initial_noise(n_chains, generator)
        for _ in range(burn_in):
            x = self.chain_step(x, generator)
        kept = []
        for _ in range(chain_length):
            x = self.chain_step(x, generator)
            kept.append(x)
        flat = torch.stack(kept, dim=1).reshape(n_chains * chain_length, -1)  # (chains * length, D), chain-major
        return self.to_data(flat[:n])

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            corruption=f"{self.noise} {self.noise_level}",
            hidden_noise=self.net.hidden_noise,
            walkback=self.walkback,
            chain_state=(f"binomial draw ({self.trials} trials)" if self.state == "sample" else "mean")
            if self.images
            else "Gaussian draw",
            sampler=f"chain from uniform noise: burn_in {self.burn_in}, chain_length {self.chain_length}",
        )
        return info
