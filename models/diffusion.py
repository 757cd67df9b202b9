"""Denoising diffusion probabilistic model (Ho et al. 2020) with DDIM sampling (Song et al. 2021).

Papers:
    Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (NeurIPS): the forward chain
        `q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)`, a network predicting the noise epsilon
        trained with the simple loss `|eps - eps_theta(x_t, t)|^2`, ancestral sampling, and the variational bound
        (Eq. 5) `L_T + sum_{t>1} L_{t-1} + L_0` with a discretized Gaussian decoder `p(x_0 | x_1)` (Eq. 13).
    Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (ICML): the cosine schedule
        (Eq. 17), learned variances interpolating between beta_t and the posterior's beta~_t (Eq. 15), and the
        hybrid loss `L_simple + lambda L_vlb` with lambda = 0.001 and the mean's gradient stopped in `L_vlb`.
    Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (ICLR): the same trained network sampled
        on a sub-sequence of the timesteps (Eq. 12); eta = 0 is deterministic given x_T, and eta = 1 on every
        timestep is the ancestral DDPM sampler with the posterior variance beta~_t.

Units: data `k/(L-1)` in `[0, 1]` is mapped to `[-1, 1]` as in Ho et al.; the decoder's bins have half-width
`1/(L-1)` there (the paper's `1/255` at L = 256) with the outer bins reaching to infinity, so `p(x_0 | x_1)` is a
distribution over the L levels and the bound bounds `log P(k)`. `log_prob_bound` returns that bound plus `D log L`
(DESIGN.md units). Timesteps are 0-indexed in code: index `i` is the paper's `t = i + 1`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from genbench.model import GenerativeModel, randn, require_discrete_images
from models.diffusion_unet import UNet

SCHEDULES = ("linear", "cosine")
VARIANCES = ("fixed_small", "fixed_large", "learned")


def beta_schedule(name: str, timesteps: int) -> np.ndarray:
    """`beta_1..beta_T` in float64.

    `linear`: Ho et al.'s 1e-4 to 0.02 at T = 1000, both ends scaled by 1000 / T (as Nichol & Dhariwal do) so
    other T keep the same total noise; capped at 0.999. `cosine`: Nichol & Dhariwal's Eq. 17, s = 0.008, each
    beta capped at 0.999.
    """
    if name == "linear":
        scale = 1000.0 / timesteps
        return np.minimum(np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64), 0.999)
    if name == "cosine":
        s = 0.008
        f = np.cos((np.arange(timesteps + 1, dtype=np.float64) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        return np.minimum(1 - f[1:] / f[:-1], 0.999)
    raise GenbenchError(f"unknown noise schedule {name!r}; accepted: {', '.join(SCHEDULES)}")


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, nats."""
    return 0.5 * (logvar2 - logvar1 - 1.0 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, levels: int
) -> torch.Tensor:
    """log P(level) per element for `x` on the L levels `-1 + 2k/(L-1)`, under a Gaussian discretized into bins.

    Ho et al.'s decoder (Eq. 13) for L levels: bin edges half-way between levels, the outer bins reaching to
    -inf and +inf, so the L probabilities sum to one.
    """
    half_bin = 1.0 / (levels - 1)
    centred = x - mean
    inv_scale = torch.exp(-log_scale)
    upper, lower = inv_scale * (centred + half_bin), inv_scale * (centred - half_bin)
    log_cdf_upper = torch.special.log_ndtr(upper)  # log P(value < upper edge)
    log_sf_lower = torch.special.log_ndtr(-lower)  # log P(value > lower edge)

    def log_diff(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:  # log(a - b) for a > b, stably
        return log_a + torch.log(-torch.expm1((log_b - log_a).clamp(max=-1e-30)))

    # Below the mean a difference of CDFs, above it of survival functions: neither subtracts two numbers near one.
    below = log_diff(log_cdf_upper, torch.special.log_ndtr(lower))
    above = log_diff(log_sf_lower, torch.special.log_ndtr(-upper))
    log_mid = torch.where(centred > 0, above, below)
    return torch.where(x < -1 + half_bin, log_cdf_upper, torch.where(x > 1 - half_bin, log_sf_lower, log_mid))


def ddim_timesteps(steps: int, timesteps: int) -> list[int]:
    """The 0-indexed timesteps a `steps`-step DDIM visits, descending from T-1 (x_T) to 0 where steps > 1.

    Evenly spaced over the training steps (Song et al.'s "linear" sub-sequence); `steps = T` visits every one.
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(f"DDIM steps must be in 1..{timesteps} (the training timesteps), got {steps}")
    return [int(i) for i in np.linspace(timesteps - 1, 0, steps).round()]


@contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """The network in eval mode (no dropout) for a sampler or the bound, restored afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


class DDPM(GenerativeModel):
    """A DDPM on discrete images: epsilon-prediction U-Net, simple or hybrid loss, DDPM and DDIM samplers.

    Args:
        spec: the data (images with discrete levels).
        timesteps: T, the diffusion's length (Ho et al.: 1000).
        schedule: `linear` (Ho et al.) or `cosine` (Nichol & Dhariwal).
        variance: the reverse process's variance: `fixed_small` (beta~_t, the posterior's), `fixed_large`
            (beta_t; Ho et al.'s CIFAR-10 choice), or `learned` (Nichol & Dhariwal's interpolation, trained with
            the hybrid loss). In all three the step to x_0 uses beta~_2, as Ho et al. do (beta~_1 is zero).
        vlb_weight: lambda of the hybrid loss (only with `learned`); the per-timestep bound term enters as
            `lambda * T * L_t` in bits/dim, so lambda = 0.001 at T = 1000 weighs it as Nichol & Dhariwal's code.
        channels, channel_mult, num_res_blocks, attn_resolutions, dropout: the U-Net (models/diffusion_unet.py).
        lr: Adam learning rate, reached after `warmup_steps` of linear warm-up (Ho et al.: 2e-4 after 5000).
        grad_clip: gradient-norm clipping (Ho et al.: 1.0); 0 disables.
        ema_decay: decay of the weight average that samples and scores (Ho et al.: 0.9999); None for the raw
            network. Warmed up as `min(decay, (1 + n) / (10 + n))` after n updates, so short runs do not score
            their initialisation.
        clip_denoised: clip the predicted x_0 to [-1, 1] in every reverse step (samplers and the bound alike, as
            Ho et al.'s code does), so the bound scores the model that samples.
        ddim_steps: the DDIM (eta = 0) step counts offered as sampling modes `ddim<k>`, besides `ddim<T>`.
        default_mode: the sampling mode listed first (what the main table's FID and throughput use).
        bound_batch: images per network call when computing the bound (timesteps are chunked to fit).
    """

    likelihood = "lower_bound"
    family = "diffusion"
    mode_changes_samples = True
    max_bound_k = 1

    def __init__(
        self,
        spec: DataSpec,
        timesteps: int = 1000,
        schedule: str = "linear",
        variance: str = "fixed_small",
        vlb_weight: float = 0.001,
        channels: int = 16,
        channel_mult: list[int] | None = None,
        num_res_blocks: int = 1,
        attn_resolutions: list[int] | None = None,
        dropout: float = 0.0,
        lr: float = 1e-3,
        warmup_steps: int = 100,
        grad_clip: float = 1.0,
        ema_decay: float | None = 0.999,
        clip_denoised: bool = True,
        ddim_steps: list[int] | None = None,
        default_mode: str = "ddim50",
        bound_batch: int = 4096,
    ) -> None:
        super().__init__(spec)
        require_discrete_images(spec, "ddpm")
        if variance not in VARIANCES:
            raise GenbenchError(f"unknown DDPM variance {variance!r}; accepted: {', '.join(VARIANCES)}")
        if timesteps < 2:
            raise GenbenchError(f"DDPM needs timesteps >= 2, got {timesteps}")
        self.timesteps, self.schedule, self.variance = int(timesteps), schedule, variance
        self.vlb_weight, self.lr, self.warmup_steps, self.grad_clip = vlb_weight, lr, warmup_steps, grad_clip
        self.ema_decay, self.clip_denoised, self.bound_batch = ema_decay, clip_denoised, int(bound_batch)
        self.levels = int(spec.levels)
        self._register_schedule(beta_schedule(schedule, self.timesteps))

        channels_in, height, width = spec.shape
        out = 2 * channels_in if variance == "learned" else channels_in
        mult = tuple(int(m) for m in channel_mult) if channel_mult is not None else None
        attn = tuple(int(a) for a in attn_resolutions) if attn_resolutions is not None else None
        self.net = UNet(channels_in, out, height, width, channels, mult, num_res_blocks, attn, dropout)
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if ema_decay else None
        self.register_step_counter()  # optimizer steps taken: the lr warm-up and the EMA's decay read it

        steps = [int(s) for s in (ddim_steps if ddim_steps is not None else (10, 25, 50, 100, 250))]
        modes = [f"ddpm{self.timesteps}"] + [f"ddim{s}" for s in [*steps, self.timesteps] if s <= self.timesteps]
        if default_mode not in modes:
            raise GenbenchError(
                f"DDPM default_mode {default_mode!r} is not a mode of this model (T = {self.timesteps}); "
                f"accepted: {', '.join(modes)}"
            )
        self.sampling_modes = tuple(dict.fromkeys([default_mode, *modes]))  # per instance: modes follow T

    def _register_schedule(self, betas: np.ndarray, dtype: torch.dtype = torch.float32) -> None:
        """The schedule's constants as non-persistent buffers (they follow the model's device and dtype)."""
        alphas_bar = np.cumprod(1.0 - betas)
        alphas_bar_prev = np.append(1.0, alphas_bar[:-1])
        posterior_var = betas * (1.0 - alphas_bar_prev) / (1.0 - alphas_bar)
        constants = {
            "betas": betas,
            "alphas_bar": alphas_bar,
            "alphas_bar_prev": alphas_bar_prev,
            # beta~_1 = 0: the step to x_0 uses beta~_2 (Ho et al.'s posterior_log_variance_clipped).
            "log_small": np.log(np.append(posterior_var[1], posterior_var[1:])),
            "log_large": np.log(np.append(posterior_var[1], betas[1:])),
            "posterior_coef_x0": betas * np.sqrt(alphas_bar_prev) / (1.0 - alphas_bar),
            "posterior_coef_xt": (1.0 - alphas_bar_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_bar),
        }
        for name, value in constants.items():
            self.register_buffer(name, torch.tensor(value, dtype=dtype), persistent=False)

    # ------------------------------------------------------------------ the diffusion's Gaussians

    @staticmethod
    def _at(values: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Per-example constants `values[i]` shaped `(B, 1, 1, 1)` to broadcast over images."""
        return values[i].view(-1, 1, 1, 1)

    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """Pipeline data `k/(L-1)` in [0, 1] to Ho et al.'s [-1, 1]."""
        return 2.0 * x - 1.0

    def to_data(self, x0: torch.Tensor) -> torch.Tensor:
        """[-1, 1] back to [0, 1], rounded to the data's levels (the discretized decoder's most likely level)."""
        top = self.levels - 1
        return torch.round((x0.clamp(-1.0, 1.0) + 1.0) / 2.0 * top) / top

    def q_sample(self, x0: torch.Tensor, i: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) for noise ~ N(0, I)."""
        abar = self._at(self.alphas_bar, i)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(x_{t-1} | x_t, x_0) (Ho et al. Eq. 6-7); at t = 1 the variance is beta~_2."""
        mean = self._at(self.posterior_coef_x0, i) * x0 + self._at(self.posterior_coef_xt, i) * xt
        return mean, self._at(self.log_small, i).expand_as(xt)

    def predict_x0(self, xt: torch.Tensor, i: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        abar = self._at(self.alphas_bar, i)
        return (xt - (1.0 - abar).sqrt() * eps) / abar.sqrt()

    def predict_eps(self, xt: torch.Tensor, i: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        abar = self._at(self.alphas_bar, i)
        return (xt - abar.sqrt() * x0) / (1.0 - abar).sqrt()

    def p_mean_logvar(
        self, out: torch.Tensor, xt: torch.Tensor, i: torch.Tensor, stop_mean_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(x_{t-1} | x_t) from the network's output `out = net(x_t, i)`, and the
        predicted x_0 (clipped where `clip_denoised`)."""
        eps, v = out.chunk(2, dim=1) if self.variance == "learned" else (out, None)
        if stop_mean_grad:
            eps = eps.detach()
        x0 = self.predict_x0(xt, i, eps)
        if self.clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _ = self.q_posterior(x0, xt, i)
        if v is not None:  # Nichol & Dhariwal Eq. 15: v in [-1, 1] interpolates the log-variance
            frac = (v + 1.0) / 2.0  # unclamped, as in their code
            logvar = frac * self._at(self.log_large, i) + (1.0 - frac) * self._at(self.log_small, i)
        else:
            logvar = self._at(self.log_small if self.variance == "fixed_small" else self.log_large, i).expand_as(xt)
        return mean, logvar, x0

    # ------------------------------------------------------------------ the variational bound

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per example, nats (no parameters: a constant of the data)."""
        i = torch.full((len(x0),), self.timesteps - 1, device=x0.device, dtype=torch.long)
        abar = self._at(self.alphas_bar, i)
        kl = normal_kl(abar.sqrt() * x0, torch.log1p(-abar).expand_as(x0), torch.zeros_like(x0), torch.zeros_like(x0))
        return kl.flatten(1).sum(1)

    def terms_at(
        self, out: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, i: torch.Tensor, stop_mean_grad: bool = False
    ) -> torch.Tensor:
        """Per-example nats of the bound's term at index i for x_t and the network's `out = net(x_t, i)`:
        L_0 = -log p(x_0 | x_1) where i = 0, else L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)); `(B,)`."""
        mean, logvar, _ = self.p_mean_logvar(out, xt, i, stop_mean_grad)
        q_mean, q_logvar = self.q_posterior(x0, xt, i)
        kl = normal_kl(q_mean, q_logvar, mean, logvar).flatten(1).sum(1)
        nll = -discretized_gaussian_log_prob(x0, mean, 0.5 * logvar, self.levels).flatten(1).sum(1)
        return torch.where(i == 0, nll, kl)

    def bound_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Every term of the bound per example, `(B, T + 1)` nats: `[L_0, L_1, ..., L_{T-1}, L_T]`.

        Each L_{t-1} draws one x_t ~ q(x_t | x_0) from `generator` (an unbiased estimate of the term); the
        timesteps go through the network `bound_batch // B` at a time, so any T fits in memory.
        """
        x0 = self.to_model_space(x)
        b = len(x0)
        net = self.sampling_net()  # the bound scores the network that samples
        per_call = max(1, self.bound_batch // b)
        terms = []
        with evaluating(net):
            for start in range(0, self.timesteps, per_call):
                idx = torch.arange(start, min(start + per_call, self.timesteps), device=x0.device)
                i = idx.repeat_interleave(b)  # (k * B,), timestep-major
                x0_rep = x0.repeat(len(idx), 1, 1, 1)
                xt = self.q_sample(x0_rep, i, randn(tuple(x0_rep.shape), generator, x0.device).to(x0.dtype))
                terms.append(self.terms_at(net(xt, i), x0_rep, xt, i).view(len(idx), b).T)
        return torch.cat([*terms, self.prior_kl(x0)[:, None]], dim=1)

    def log_prob_bound(self, x: torch.Tensor, k: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """The variational bound (Ho et al. Eq. 5) on `log P(k)` over all T timesteps, plus `D log L` (DESIGN units).

        One x_t per timestep and example, so it is a stochastic lower bound (unbiased for the bound itself).
        """
        if k != 1:
            raise ValueError(f"a diffusion model's bound takes no importance samples (k = 1 only), got k={k}")
        bound = -self.bound_terms(x, generator).double().sum(1)
        return bound + self.spec.dim * math.log(self.levels)

    def likelihood_protocol(self) -> dict[str, object]:
        return {"timesteps": self.timesteps, "bound": "ddpm-vlb (Ho et al. 2020 Eq. 5, discretized Gaussian L_0)"}

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"adam": torch.optim.Adam(self.net.parameters(), lr=self.lr)}
        return self.optimizers

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The simple loss (mean squared noise error), and with learned variances the hybrid loss on top."""
        x0 = self.to_model_space(x)
        i = torch.randint(0, self.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        xt = self.q_sample(x0, i, noise)
        out = self.net(xt, i)
        eps = out.chunk(2, dim=1)[0] if self.variance == "learned" else out
        mse = F.mse_loss(eps, noise)
        if self.variance != "learned":
            return {"loss": mse}
        # Only the variance learns from the bound: the mean's gradient is stopped (Nichol & Dhariwal Sec. 3.1).
        vlb = self.terms_at(out, x0, xt, i, stop_mean_grad=True).mean() / (self.spec.dim * math.log(2.0))
        return {"loss": mse + self.vlb_weight * self.timesteps * vlb, "mse": mse, "vlb_bits_per_dim": vlb}

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        opt = self.optimizers["adam"]
        for group in opt.param_groups:  # linear warm-up from the step count in the state_dict (resume-safe)
            group["lr"] = self.lr * min(1.0, (self.steps_taken() + 1) / max(1, self.warmup_steps))
        scalars = self.losses(x)
        opt.zero_grad(set_to_none=True)
        scalars["loss"].backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        opt.step()
        self._update_ema()
        return {k: v.detach() for k, v in scalars.items()}  # read by the trainer once per logging interval

    @torch.no_grad()
    def _update_ema(self) -> None:
        self.count_step()
        n = self.steps_taken()
        if self.ema is None:
            return
        decay = min(self.ema_decay, (1 + n) / (10 + n))
        for p_ema, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            p_ema.lerp_(p, 1 - decay)

    # ------------------------------------------------------------------ sampling

    def sampling_net(self) -> nn.Module:
        """The weight average where there is one: what samples and what the bound scores."""
        return self.ema if self.ema is not None else self.net

    def _noise(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        return randn(shape, generator, self.device).to(self.betas.dtype)

    @torch.no_grad()
    def denoise_ddpm(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling through all T steps (Ho et al. Algorithm 2); the last step returns p(x_0 | x_1)'s
        mean. Returns `(n, C, H, W)` in [-1, 1], before rounding to the levels."""
        x = self._noise((n, *self.spec.shape), generator)
        with evaluating(self.sampling_net()) as net:
            for step in reversed(range(self.timesteps)):
                i = torch.full((n,), step, device=x.device, dtype=torch.long)
                mean, logvar, _ = self.p_mean_logvar(net(x, i), x, i)
                x = mean + torch.exp(0.5 * logvar) * self._noise(tuple(x.shape), generator) if step > 0 else mean
        return x

    @torch.no_grad()
    def denoise_ddim(
        self, n: int, steps: int, eta: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """DDIM (Song et al. Eq. 12) on `steps` evenly spaced timesteps; eta = 0 draws noise for x_T only.

        With `clip_denoised`, epsilon is recomputed from the clipped x_0, so eta = 1 on all T steps is the
        ancestral sampler with variance beta~_t step for step (`fixed_small`). Returns `(n, C, H, W)` in
        [-1, 1], before rounding to the levels.
        """
        seq = ddim_timesteps(steps, self.timesteps)
        x = self._noise((n, *self.spec.shape), generator)
        with evaluating(self.sampling_net()) as net:
            for j, step in enumerate(seq):
                i = torch.full((n,), step, device=x.device, dtype=torch.long)
                out = net(x, i)
                eps = out.chunk(2, dim=1)[0] if self.variance == "learned" else out
                x0 = self.predict_x0(x, i, eps)
                if self.clip_denoised:
                    x0 = x0.clamp(-1.0, 1.0)
                    eps = self.predict_eps(x, i, x0)
                if j == len(seq) - 1:
                    x = x0
                    break
                abar, abar_prev = self.alphas_bar[step], self.alphas_bar[seq[j + 1]]
                sigma = eta * torch.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
                x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
                if eta > 0:
                    x = x + sigma * self._noise(tuple(x.shape), generator)
        return x

    def network_evaluations(self, mode: str | None = None) -> int:
        """The step count: T for ancestral DDPM, k for `ddim<k>`."""
        mode = self.check_mode(mode)
        return int(mode.removeprefix("ddpm").removeprefix("ddim"))

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        """`n` samples in `mode` (`ddpm<T>`: ancestral; `ddim<k>`: DDIM, eta = 0, k steps)."""
        mode = self.check_mode(mode)
        if mode.startswith("ddpm"):
            return self.to_data(self.denoise_ddpm(n, generator))
        return self.to_data(self.denoise_ddim(n, self.network_evaluations(mode), 0.0, generator))

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            parameters=sum(p.numel() for p in self.net.parameters()),  # the EMA copy is not counted twice
            timesteps=self.timesteps,
            schedule=self.schedule,
            variance=self.variance,
            loss="hybrid" if self.variance == "learned" else "simple",
            ema_decay=self.ema_decay,
            sampler="ancestral DDPM at T steps; DDIM eta=0 at k steps (evenly spaced), x_T ~ N(0, I)",
        )
        return info
