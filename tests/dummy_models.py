"""Tiny stand-in models for trainer and pipeline tests (fast, and able to misbehave on purpose)."""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.data import DataSpec
from genbench.model import GenerativeModel, randn


class GaussianModel(GenerativeModel):
    """A diagonal Gaussian with learnable mean and log-std: exact likelihood, one-line training."""

    likelihood = "exact"

    def __init__(
        self,
        spec: DataSpec,
        lr: float = 0.05,
        nan_at_step: int | None = None,
        crash_at_step: int | None = None,
        **_: object,
    ) -> None:
        super().__init__(spec)
        self.mean = nn.Parameter(torch.zeros(spec.shape))
        self.log_std = nn.Parameter(torch.zeros(spec.shape))
        self.lr, self.nan_at_step, self.crash_at_step = lr, nan_at_step, crash_at_step
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=self.lr)}
        return self.optimizers

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z**2 - self.log_std - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        # Noise from the global RNG, so resume must restore the RNG state to reproduce the run.
        loss = -self.log_prob(x + 0.01 * torch.randn_like(x)).mean()
        self.optimizers["adam"].zero_grad()
        loss.backward()
        self.optimizers["adam"].step()
        self.steps += 1
        if self.crash_at_step is not None and int(self.steps) >= self.crash_at_step:
            raise RuntimeError("simulated library failure")
        if self.nan_at_step is not None and int(self.steps) >= self.nan_at_step:
            return {"loss": float("nan")}
        return {"loss": loss.item()}

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        self.check_mode(mode)
        return self.mean + torch.exp(self.log_std) * randn((n, *self.spec.shape), generator, self.device)
