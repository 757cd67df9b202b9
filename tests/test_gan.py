"""GAN: networks sized from the data, every loss trains, EMA sampling, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from models.gan import GAN, LOSSES, upsampling_stages


def spec(shape: tuple[int, ...], levels: int | None = 256) -> DataSpec:
    return DataSpec("t", shape, levels, (0.0, 1.0), 10, 10, "test")


@pytest.mark.parametrize("size, stages", [(8, 1), (28, 2), (32, 3), (64, 4)])
def test_upsampling_stages(size: int, stages: int) -> None:
    assert upsampling_stages(size) == stages


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (2,)])
def test_sample_shape_and_range(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    gan = GAN(spec(shape, 256 if len(shape) == 3 else None), latent_dim=4, width=4)
    gen = torch.Generator().manual_seed(0)
    x = gan.sample(5, gen)
    assert x.shape == (5, *shape)
    if len(shape) == 3:
        assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, gan.sample(5, torch.Generator().manual_seed(0)))  # one generator state, one sample


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_trains_the_discriminator(loss: str) -> None:
    torch.manual_seed(0)
    gan = GAN(spec((1, 8, 8)), latent_dim=4, width=4, loss=loss, lr=1e-3)
    gan.configure_optimizers()
    real = torch.rand(16, 1, 8, 8).round()  # binary images: easy to tell from the smooth init's samples
    before = [p.clone() for p in gan.generator.parameters()]
    logs = [gan.train_step(real) for _ in range(5)]
    assert all(math.isfinite(v) for log in logs for v in log.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.generator.parameters(), strict=True))
    with torch.no_grad():
        fake = gan.decode(torch.randn(16, 4))
        margin = gan.discriminator(real).mean() - gan.discriminator(fake).mean()
    assert margin > 0  # the critic scores real data above generated data


def test_ema_generator_lags_the_raw_one() -> None:
    torch.manual_seed(0)
    gan = GAN(spec((2,), None), latent_dim=2, width=4, ema_decay=0.99)
    gan.configure_optimizers()
    for _ in range(30):
        gan.train_step(torch.randn(32, 2))
    raw = torch.cat([p.flatten() for p in gan.generator.parameters()])
    ema = torch.cat([p.flatten() for p in gan.generator_ema.parameters()])
    assert not torch.allclose(raw, ema) and (raw - ema).abs().max() < 1.0


def test_bad_input() -> None:
    with pytest.raises(GenbenchError, match="unknown GAN loss 'ls'; accepted: ns, hinge, wgan-gp"):
        GAN(spec((1, 8, 8)), loss="ls")
    with pytest.raises(ValueError, match="square"):
        GAN(spec((1, 8, 6)))
    with pytest.raises(ValueError, match="not shape"):
        GAN(spec((3,), None))
