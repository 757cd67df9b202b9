"""Generative adversarial networks (Goodfellow et al. 2014) with DCGAN-style networks (Radford et al. 2016).

Losses: `ns`, the non-saturating generator loss of Goodfellow et al.; `hinge` (Lim & Ye 2017; Miyato et
al. 2018); `wgan-gp`, the Wasserstein critic with gradient penalty (Gulrajani et al. 2017).
Optional exponential moving average of the generator weights (Yazici et al. 2019), used for sampling.
The generator is a decoder `z -> x`, so AIS can estimate a GAN's likelihood under a Gaussian
observation model (Wu et al. 2017); a GAN has no likelihood of its own.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from genbench.model import GenerativeModel, randn

LOSSES = ("ns", "hinge", "wgan-gp")


def upsampling_stages(size: int, smallest: int = 4) -> int:
    """How many 2x up-samplings reach `size` from a start of at least `smallest` pixels (8->1, 28->2, 32->3)."""
    stages = 0
    while size % 2 == 0 and size // 2 >= smallest:
        size //= 2
        stages += 1
    return stages


class ConvGenerator(nn.Module):
    """z -> (C, H, W) in [0, 1]: a linear projection, then transposed convolutions doubling the size."""

    def __init__(self, latent_dim: int, shape: tuple[int, ...], width: int) -> None:
        super().__init__()
        channels, height, width_px = shape
        if height != width_px:
            raise ValueError(f"the conv GAN needs square images, got {height}x{width_px}")
        stages = upsampling_stages(height)
        self.start = height // 2**stages
        self.start_channels = width * 2**stages
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.start_channels * self.start**2),
            nn.BatchNorm1d(self.start_channels * self.start**2),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        ch = self.start_channels
        for _ in range(stages):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.Conv2d(ch, channels, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(len(z), self.start_channels, self.start, self.start)  # (B, C0, s, s)
        return self.body(h)


class ConvDiscriminator(nn.Module):
    """(C, H, W) -> one logit: strided convolutions halving the size, no batch norm (WGAN-GP needs none)."""

    def __init__(self, shape: tuple[int, ...], width: int) -> None:
        super().__init__()
        channels, height, _ = shape
        stages = upsampling_stages(height)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(stages):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch *= 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(ch * (height // 2**stages) ** 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


def mlp(d_in: int, d_out: int, hidden: int, depth: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Linear(hidden, d_out))


class GAN(GenerativeModel):
    """A GAN whose networks are sized from the DataSpec: conv pair for images, MLP pair for toy 2-D data.

    Args:
        spec: the data's DataSpec.
        latent_dim: size of z ~ N(0, I).
        width: base channel count (images) or hidden units (toy data).
        loss: one of `LOSSES`.
        lr, beta1, beta2: Adam, with DCGAN's betas (0.5, 0.999) by default.
        d_steps: discriminator updates per generator update.
        gp_weight: gradient-penalty weight for `wgan-gp`.
        ema_decay: decay of the generator's weight average used for sampling; None to sample the raw generator.
    """

    likelihood = "none"
    family = "adversarial"

    def __init__(
        self,
        spec: DataSpec,
        latent_dim: int = 32,
        width: int = 32,
        loss: str = "ns",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        d_steps: int = 1,
        gp_weight: float = 10.0,
        ema_decay: float | None = 0.999,
    ) -> None:
        super().__init__(spec)
        if loss not in LOSSES:
            raise GenbenchError(f"unknown GAN loss {loss!r}; accepted: {', '.join(LOSSES)}")
        self.latent_dim, self.loss, self.d_steps, self.gp_weight = latent_dim, loss, d_steps, gp_weight
        self.lr, self.betas, self.ema_decay = lr, (beta1, beta2), ema_decay
        if spec.is_image:
            self.generator: nn.Module = ConvGenerator(latent_dim, spec.shape, width)
            self.discriminator: nn.Module = ConvDiscriminator(spec.shape, width)
        elif spec.shape == (2,):
            self.generator = mlp(latent_dim, 2, width * 4)
            self.discriminator = nn.Sequential(mlp(2, 1, width * 4), nn.Flatten(0))
        else:
            raise ValueError(f"GAN supports images (C, H, W) and 2-D points, not shape {spec.shape}")
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if ema_decay else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas),
        }
        return self.optimizers

    # --------------------------------------------------------------------- losses

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        d_real, d_fake = self.discriminator(real), self.discriminator(fake)
        if self.loss == "ns":
            return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if self.loss == "hinge":
            return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        return d_fake.mean() - d_real.mean() + self.gp_weight * self._gradient_penalty(real, fake)

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(mixed).sum(), mixed, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def _g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        d_fake = self.discriminator(fake)
        return F.softplus(-d_fake).mean() if self.loss == "ns" else -d_fake.mean()

    # --------------------------------------------------------------------- contract

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        for _ in range(self.d_steps):
            with torch.no_grad():
                fake = self.generator(torch.randn(len(x), self.latent_dim, device=x.device))
            d_loss = self._d_loss(x, fake)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        fake = self.generator(torch.randn(len(x), self.latent_dim, device=x.device))
        g_loss = self._g_loss(fake)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        self._update_ema()
        return {"g_loss": g_loss.detach(), "d_loss": d_loss.detach()}  # tensors: the trainer reads them when it logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        # Warm-up: early on the average follows the generator closely, so short runs do not sample their init.
        self.ema_updates += 1
        # On the device, so the step never waits for it: min(ema_decay, (1 + n) / (10 + n)).
        decay = ((1 + self.ema_updates) / (10 + self.ema_updates)).clamp(max=self.ema_decay)
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            p_ema.lerp_(p, (1 - decay).to(p.dtype))
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            b_ema.copy_(b)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The (averaged) generator: z of shape (B, latent_dim) -> data space."""
        net = self.generator_ema if self.generator_ema is not None else self.generator
        was_training = net.training
        net.eval()  # batch norm uses running statistics, so one sample does not depend on its batch
        out = net(z)
        net.train(was_training)
        return out

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        self.check_mode(mode)
        return self.decode(randn((n, self.latent_dim), generator, self.device))
