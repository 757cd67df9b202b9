"""Variational auto-encoder (Kingma & Welling 2014; Rezende et al. 2014) with IWAE bounds (Burda et al. 2016).

The image decoder is a discretized logistic over the data's `L` levels (Salimans et al. 2017,
PixelCNN++), so the ELBO bounds the same discrete likelihood that PixelCNN computes exactly; in
DESIGN.md units `log_prob_bound` returns the bound on `log P(k) + D log L`. On toy 2-D data the decoder
is a Gaussian and the bound is on the continuous density. `log_prob_bound(x, k)` is the ELBO at `k=1`
and the IWAE-`k` bound above, evaluated `chunk` importance samples at a time so memory is bounded.
On toy data training warms the KL term up (`kl_warmup`): `loss_nats_per_dim` is minus the true bound (per
dimension) only once `kl_weight`, logged beside it, reaches 1; what is evaluated is always the true bound.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import DataSpec
from genbench.metrics.likelihood import chunked_logmeanexp
from genbench.model import GenerativeModel, randn
from models.gan import mlp, upsampling_stages

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SCALE = -7.0
TOY_KL_WARMUP = 500  # steps of KL warm-up on toy 2-D data (see `VAE`)
TOY_MAX_GRAD_NORM = 50.0  # gradient-norm clip on toy 2-D data (see `VAE`)


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, levels: int
) -> torch.Tensor:
    """log P(k) per element for values `x = k/(L-1)` under a logistic discretized into `L` bins on [0, 1].

    The outermost bins absorb the tails, so the probabilities of the `L` levels sum to one.
    """
    half_bin = 0.5 / (levels - 1)
    centred = x - mean
    inv_scale = torch.exp(-log_scale)
    upper, lower = inv_scale * (centred + half_bin), inv_scale * (centred - half_bin)
    log_cdf_upper = F.logsigmoid(upper)  # log P(value <= upper edge)
    log_sf_lower = F.logsigmoid(-lower)  # log P(value > lower edge)
    # The bin's mass as a difference of CDFs below the mean and of survival functions above it, so neither
    # subtracts two numbers close to one: log(a - b) = log a + log1p(-b/a).
    below = log_cdf_upper + torch.log1p(-torch.exp(F.logsigmoid(lower) - log_cdf_upper).clamp(max=1 - 1e-6))
    above = log_sf_lower + torch.log1p(-torch.exp(F.logsigmoid(-upper) - log_sf_lower).clamp(max=1 - 1e-6))
    log_mid = torch.where(centred > 0, above, below)
    return torch.where(x < half_bin, log_cdf_upper, torch.where(x > 1 - half_bin, log_sf_lower, log_mid))


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * LOG_2PI


class ConvEncoder(nn.Module):
    """(C, H, W) -> (mean, log-variance) of q(z|x)."""

    def __init__(self, shape: tuple[int, ...], width: int, latent_dim: int) -> None:
        super().__init__()
        channels, height, _ = shape
        stages = upsampling_stages(height)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        ch = width
        for _ in range(stages):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.ReLU()]
            ch *= 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(ch * (height // 2**stages) ** 2, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x)).chunk(2, dim=1)


class ConvDecoder(nn.Module):
    """z -> per-pixel (mean, log-scale) of the discretized logistic, each (B, C, H, W)."""

    def __init__(self, shape: tuple[int, ...], width: int, latent_dim: int) -> None:
        super().__init__()
        channels, height, _ = shape
        stages = upsampling_stages(height)
        self.start, self.start_channels = height // 2**stages, width * 2**stages
        self.project = nn.Sequential(nn.Linear(latent_dim, self.start_channels * self.start**2), nn.ReLU())
        layers: list[nn.Module] = []
        ch = self.start_channels
        for _ in range(stages):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.ReLU()]
            ch //= 2
        self.body = nn.Sequential(*layers, nn.Conv2d(ch, 2 * channels, 3, padding=1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.project(z).view(len(z), self.start_channels, self.start, self.start)  # (B, C0, s, s)
        mean, log_scale = self.body(h).chunk(2, dim=1)
        return torch.sigmoid(mean), log_scale.clamp(min=MIN_LOG_SCALE)


class MLPGaussian(nn.Module):
    """R^d_in -> (mean, log-std or log-variance) in R^d_out, for toy data."""

    def __init__(self, d_in: int, d_out: int, hidden: int) -> None:
        super().__init__()
        self.net = mlp(d_in, 2 * d_out, hidden)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(v).chunk(2, dim=1)


class VAE(GenerativeModel):
    """A VAE with a Gaussian q(z|x) and a discretized-logistic (images) or Gaussian (toy) decoder.

    Args:
        spec: the data's DataSpec.
        latent_dim: size of z ~ N(0, I).
        width: base channel count (images) or hidden units / 4 (toy data).
        lr: Adam learning rate.
        train_k: importance samples in the training objective (1 = ELBO, more = IWAE training).
        chunk: importance samples evaluated at once by `log_prob_bound`.
        kl_warmup: training steps over which the weight of the KL term (log p(z) - log q(z|x) in each importance
            weight) rises linearly to 1; None = `TOY_KL_WARMUP` on toy 2-D data, 0 (off) on images. Without it the
            toy VAE collapses within ~10 steps: the decoder's learned variance grows to the data's (~2 per axis)
            before the encoder carries any information, and from there z is ignored (KL to truth = a single
            Gaussian's). Training only: `log_prob_bound` (the evaluation) is always the true bound, weight 1.
        max_grad_norm: clip the gradient's global norm to this before each step; None = `TOY_MAX_GRAD_NORM` on
            toy 2-D data, 0 (off) on images. The toy Gaussian decoder learns its own scale: on grid25 (sigma 0.05)
            at width 128 a step whose gradient norm jumped from ~5 to ~100 sent the encoder's log-variance to 9
            and the decoder's log-std to -24, and the loss to inf two steps later (two of the six runs there). Typical
            norms there are 2-30, so the clip binds about once in a thousand steps; `grad_norm` (before the clip)
            is logged beside the loss.
    """

    likelihood = "lower_bound"
    family = "variational"

    def __init__(
        self,
        spec: DataSpec,
        latent_dim: int = 16,
        width: int = 32,
        lr: float = 1e-3,
        train_k: int = 1,
        chunk: int = 256,
        kl_warmup: int | None = None,
        max_grad_norm: float | None = None,
    ) -> None:
        super().__init__(spec)
        self.latent_dim, self.lr, self.train_k, self.chunk = latent_dim, lr, train_k, chunk
        if kl_warmup is None:
            kl_warmup = 0 if spec.is_image else TOY_KL_WARMUP
        if kl_warmup < 0:
            raise ValueError(f"kl_warmup must be >= 0, got {kl_warmup}")
        self.kl_warmup = int(kl_warmup)
        if max_grad_norm is None:
            max_grad_norm = 0.0 if spec.is_image else TOY_MAX_GRAD_NORM
        if max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0 (0 = off), got {max_grad_norm}")
        self.max_grad_norm = float(max_grad_norm)
        if self.kl_warmup:  # only then: an image VAE's state dict (and checkpoints) stay as they were
            self.register_step_counter()
        if spec.is_image:
            if spec.levels is None:
                raise ValueError("the image VAE needs discrete data (spec.levels)")
            self.encoder: nn.Module = ConvEncoder(spec.shape, width, latent_dim)
            self.decoder: nn.Module = ConvDecoder(spec.shape, width, latent_dim)
        elif spec.shape == (2,):
            self.encoder = MLPGaussian(2, latent_dim, width * 4)
            self.decoder = MLPGaussian(latent_dim, 2, width * 4)
        else:
            raise ValueError(f"VAE supports images (C, H, W) and 2-D points, not shape {spec.shape}")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=self.lr)}
        return self.optimizers

    # --------------------------------------------------------------------- densities

    def log_prob_given_latent(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example in DESIGN units (`log P(k|z) + D log L` for images); x (B, ...), z (B, latent)."""
        mean, log_scale = self.decoder(z)
        if self.spec.is_image:
            log_p = discretized_logistic_log_prob(x, mean, log_scale, self.spec.levels).flatten(1).sum(1)
            return log_p + self.spec.dim * math.log(self.spec.levels)
        return gaussian_log_prob(x, mean, log_scale).sum(1)

    def _log_weights(
        self, x: torch.Tensor, n: int, generator: torch.Generator | None = None, kl_weight: float = 1.0
    ) -> torch.Tensor:
        """n importance log-weights log p(x|z) + kl_weight (log p(z) - log q(z|x)) per example, shape (n, B);
        noise from `generator`. Only training's KL warm-up passes kl_weight < 1 (then they bound nothing)."""
        mu, logvar = self.encoder(x)
        std = torch.exp(0.5 * logvar)
        eps = randn((n, *mu.shape), generator, x.device)
        z = mu + std * eps  # (n, B, latent)
        log_q = gaussian_log_prob(eps, torch.zeros_like(eps), torch.zeros_like(eps)).sum(-1) - (0.5 * logvar).sum(-1)
        log_prior = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)).sum(-1)
        x_rep = x.expand(n, *x.shape).reshape(n * len(x), *x.shape[1:])  # (n*B, ...)
        log_lik = self.log_prob_given_latent(x_rep, z.reshape(n * len(x), -1)).view(n, len(x))
        if kl_weight == 1.0:
            return log_lik + log_prior - log_q
        return log_lik + kl_weight * (log_prior - log_q)

    def log_prob_bound(
        self, x: torch.Tensor, k: int = 1, chunk: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """ELBO (k=1) or IWAE-k lower bound on log p(x), per example, nats in DESIGN units.

        At most `chunk` (default: the model's own) importance samples per example are decoded at once; the
        importance samples are drawn from `generator` (the evaluation's), so a seeded evaluation is reproducible.
        """
        return chunked_logmeanexp(lambda n: self._log_weights(x, n, generator), k, chunk or self.chunk)

    def kl_weight(self) -> float:
        """The KL weight of the next training step: (n + 1) / kl_warmup after n steps, at most 1."""
        if not self.kl_warmup:
            return 1.0
        return min(1.0, (self.steps_taken() + 1) / self.kl_warmup)

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        weight = self.kl_weight()
        log_w = self._log_weights(x, self.train_k, kl_weight=weight)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.train_k)
        loss = -bound.mean() / self.spec.dim  # per dimension, so the learning rate does not depend on image size
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        scalars: dict[str, torch.Tensor | float] = {"loss_nats_per_dim": loss.detach()}
        if self.max_grad_norm:
            scalars["grad_norm"] = nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
        opt.step()
        if self.kl_warmup:
            self.count_step()
            scalars["kl_weight"] = weight
        return scalars

    # --------------------------------------------------------------------- sampling

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image (or point) for latents z of shape (B, latent_dim)."""
        return self.decoder(z)[0]

    def sample_given_latent(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x|z) for latents z of shape (B, latent_dim) (discretized to the data's levels for images)."""
        mean, log_scale = self.decoder(z)
        noise = randn(mean.shape, generator, self.device)
        if not self.spec.is_image:
            return mean + torch.exp(log_scale) * noise
        # Logistic noise from the same generator: inverse CDF of a uniform made from a Gaussian draw.
        u = torch.special.ndtr(noise).clamp(1e-6, 1 - 1e-6)
        values = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        levels = self.spec.levels
        return torch.round(values.clamp(0, 1) * (levels - 1)) / (levels - 1)

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        """Ancestral samples: z ~ N(0, I), then x ~ p(x|z)."""
        self.check_mode(mode)
        return self.sample_given_latent(randn((n, self.latent_dim), generator, self.device), generator)
