"""VAE: the discretized logistic is a distribution, IWAE-k >= ELBO, chunking bounds memory."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data import DataSpec
from models.vae import VAE, discretized_logistic_log_prob


def spec(shape: tuple[int, ...], levels: int | None) -> DataSpec:
    return DataSpec("t", shape, levels, (0.0, 1.0), 10, 10, "test")


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_logistic_sums_to_one_over_levels(levels: int) -> None:
    torch.manual_seed(0)
    mean = torch.rand(50, 1).double() * 1.4 - 0.2  # means inside and outside [0, 1]
    log_scale = torch.rand(50, 1).double() * 8 - 7  # from very sharp to very flat
    k = torch.arange(levels, dtype=torch.float64)[None] / (levels - 1)
    total = discretized_logistic_log_prob(k.expand(50, -1), mean, log_scale, levels).exp().sum(1)
    assert torch.allclose(total, torch.ones(50, dtype=torch.float64), atol=1e-6)


def test_discretized_logistic_matches_cdf_difference_far_in_the_tails() -> None:
    x = torch.tensor([0.5], dtype=torch.float64)
    mean, log_scale = torch.tensor([0.1], dtype=torch.float64), torch.tensor([math.log(0.02)], dtype=torch.float64)
    half = 0.5 / 255
    expected = torch.sigmoid((x - mean + half) / 0.02) - torch.sigmoid((x - mean - half) / 0.02)
    # Computed in the survival-function form this stays finite and accurate where 1 - 1 would lose it all.
    got = discretized_logistic_log_prob(x, mean, log_scale, 256)
    assert torch.isfinite(got).all() and math.isclose(float(got), math.log(float(expected)), rel_tol=1e-6)


@pytest.mark.parametrize("shape, levels", [((1, 8, 8), 17), ((2,), None)])
def test_iwae_bound_is_above_the_elbo(shape: tuple[int, ...], levels: int | None) -> None:
    torch.manual_seed(0)
    vae = VAE(spec(shape, levels), latent_dim=4, width=4)
    x = torch.randint(0, 17, (32, *shape)) / 16 if levels else torch.randn(32, *shape)
    with torch.no_grad():
        torch.manual_seed(1)
        iwae = vae.log_prob_bound(x, 64)
        torch.manual_seed(1)  # the same 64 importance samples, averaged as 64 single-sample ELBOs
        elbos = vae._log_weights(x, 64)
    assert torch.isfinite(iwae).all()
    assert torch.all(iwae > elbos.mean(0))  # log-mean-exp > mean for non-constant weights (Jensen)
    assert torch.allclose(iwae, torch.logsumexp(elbos, 0) - math.log(64), atol=1e-4)


def test_chunked_bound_never_decodes_more_than_a_chunk() -> None:
    torch.manual_seed(0)
    vae = VAE(spec((1, 8, 8), 17), latent_dim=4, width=4, chunk=5)
    x = torch.randint(0, 17, (3, 1, 8, 8)) / 16
    rows: list[int] = []
    vae.decoder.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    with torch.no_grad():
        vae.log_prob_bound(x, 23)
    assert sum(rows) == 23 * 3 and max(rows) <= 5 * 3


def test_samples_lie_on_the_data_grid_and_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    vae = VAE(spec((1, 8, 8), 17), latent_dim=4, width=8, lr=3e-3)
    vae.configure_optimizers()
    x = torch.randint(0, 17, (32, 1, 8, 8)) / 16
    first = vae.train_step(x)["loss_nats_per_dim"]
    for _ in range(30):
        last = vae.train_step(x)["loss_nats_per_dim"]
    assert last < first
    s = vae.sample(10, torch.Generator().manual_seed(1)) * 16
    assert torch.equal(s, s.round()) and s.min() >= 0 and s.max() <= 16


def test_bound_chunk_argument_overrides_the_model_default() -> None:
    vae = VAE(spec((1, 8, 8), 17), latent_dim=4, width=4, chunk=256)
    rows: list[int] = []
    vae.decoder.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    with torch.no_grad():
        vae.log_prob_bound(torch.zeros(2, 1, 8, 8), 10, chunk=4)
    assert rows == [8, 8, 4]  # chunks of 4, 4 and 2 importance samples for 2 examples
