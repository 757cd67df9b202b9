"""Tests of models/diffusion.py: the bound's terms against closed forms and brute force, the samplers, resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from genbench.train import TrainConfig, seed_everything, train
from models.diffusion import DDPM, beta_schedule, ddim_timesteps, discretized_gaussian_log_prob
from models.diffusion_unet import SelfAttention, resolutions

LEVELS = 5
SPEC = DataSpec("tiny", (1, 4, 4), LEVELS, (0.0, 1.0), 10, 10, "synthetic")
TINY = {"channels": 8, "ddim_steps": [2, 5], "default_mode": "ddim2", "ema_decay": 0.9}


def tiny_model(timesteps: int = 3, double: bool = False, spec: DataSpec = SPEC, **kwargs: object) -> DDPM:
    """A tiny DDPM whose networks are perturbed away from the zero-initialised output (which predicts eps = 0);
    `double`: float64 weights and schedule constants, so round-off does not hide a difference."""
    torch.manual_seed(0)
    model = DDPM(spec, timesteps=timesteps, schedule="cosine", **{**TINY, **kwargs})
    with torch.no_grad():
        for p in [*model.net.parameters(), *model.ema.parameters()]:
            p.add_(0.2 * torch.randn_like(p))
    if double:
        model.double()._register_schedule(beta_schedule("cosine", timesteps), torch.float64)
    return model


def levels_batch(n: int, seed: int = 0) -> torch.Tensor:
    """`n` images of discrete data `k/(L-1)`."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, LEVELS, (n, *SPEC.shape), generator=gen).float() / (LEVELS - 1)


def test_schedules() -> None:
    linear = beta_schedule("linear", 1000)
    assert math.isclose(linear[0], 1e-4) and math.isclose(linear[-1], 0.02)
    cosine = beta_schedule("cosine", 1000)
    f = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in (0, 500)]
    assert math.isclose(float((1 - cosine[:500]).prod()), f[1] / f[0], rel_tol=1e-9)  # Nichol & Dhariwal Eq. 17
    with pytest.raises(GenbenchError, match="unknown noise schedule 'quadratic'; accepted: linear, cosine"):
        beta_schedule("quadratic", 10)


def test_prior_term_is_the_closed_form_kl_to_a_standard_normal() -> None:
    model = DDPM(SPEC, timesteps=10, **TINY)
    model._register_schedule(np.full(10, 0.05))  # a gentle schedule leaves x_T far from N(0, I): L_T is not ~0
    x = levels_batch(3)
    abar = 0.95**10
    q = Normal(math.sqrt(abar) * (2 * x - 1), math.sqrt(1 - abar))
    expected = kl_divergence(q, Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(model.prior_kl(2 * x - 1), expected, rtol=1e-5, atol=1e-6)
    assert (expected > 1.0).all()
    linear = DDPM(SPEC, timesteps=1000, **TINY).prior_kl(2 * x - 1)  # Ho et al.: L_T ~ 1e-5 bits/dim
    assert (linear < 1e-3 * SPEC.dim).all()


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_decoder_probabilities_sum_to_one_over_the_levels(levels: int) -> None:
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64)[:, None]  # (L, 1): each level, each (mean, scale)
    mean = torch.tensor([[-1.3, -0.99, -0.2, 0.0, 0.37, 1.0, 4.0]], dtype=torch.float64)
    log_scale = torch.tensor([[-6.0, -3.0, -1.0, 0.0, -4.5, -2.0, 0.5]], dtype=torch.float64)
    log_p = discretized_gaussian_log_prob(grid, mean, log_scale, levels)
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p.exp().sum(0), torch.ones(mean.shape[1], dtype=torch.float64))
    # a narrow decoder centred on a level puts almost all its mass there, edges included
    narrow = discretized_gaussian_log_prob(grid, grid, torch.full_like(grid, -8.0), levels)
    assert (narrow > -1e-5).all()


def test_each_kl_term_against_torch_distributions() -> None:
    """L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), the posterior derived here as a product of
    Gaussians (not Ho et al.'s Eq. 7 coefficients), the model's mean checked against Ho et al.'s Eq. 11."""
    model = tiny_model(timesteps=4, clip_denoised=False)
    betas = torch.tensor(beta_schedule("cosine", 4))
    abar = (1 - betas).cumprod(0)
    x0 = 2 * levels_batch(2) - 1
    for step in range(1, 4):
        i = torch.full((2,), step)
        xt = model.q_sample(x0, i, torch.randn_like(x0))
        prior_var, lik_var = 1 - abar[step - 1], betas[step]  # x_{t-1} | x_0, and x_t | x_{t-1}
        post_var = 1 / (1 / prior_var + (1 - lik_var) / lik_var)
        post_mean = post_var * (abar[step - 1].sqrt() * x0 / prior_var + (1 - lik_var).sqrt() * xt / lik_var)
        eps = model.ema(xt, i)
        mean, logvar, _ = model.p_mean_logvar(eps, xt, i)
        ho_mean = (xt - betas[step] / (1 - abar[step]).sqrt() * eps) / (1 - betas[step]).sqrt()
        torch.testing.assert_close(mean, ho_mean.float(), rtol=1e-4, atol=1e-5)
        expected = kl_divergence(Normal(post_mean, post_var.sqrt()), Normal(mean, (0.5 * logvar).exp()))
        got = model.terms_at(eps, x0, xt, i)
        torch.testing.assert_close(got, expected.flatten(1).sum(1).float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned"])
def test_bound_equals_brute_force_monte_carlo_elbo(variance: str) -> None:
    """The bound's sum of terms against E_q[log p(x_{0:T}) - log q(x_{1:T} | x_0)] over whole forward
    trajectories, each density evaluated directly (T = 3, a tiny network on 2x2 images)."""
    spec = DataSpec("tiny", (1, 2, 2), LEVELS, (0.0, 1.0), 10, 10, "synthetic")
    model = tiny_model(timesteps=3, spec=spec, variance=variance)
    net, betas = model.ema, model.betas
    n = 8_000
    x = torch.tensor([0.0, 0.25, 1.0, 0.75]).view(1, *spec.shape).expand(n, *spec.shape)
    gen = torch.Generator().manual_seed(1)
    states = [2 * x - 1]
    log_q = torch.zeros(n, dtype=torch.float64)
    for step in range(3):  # x_t ~ q(x_t | x_{t-1}), forward
        mean, std = (1 - betas[step]).sqrt() * states[-1], betas[step].sqrt()
        xt = mean + std * torch.randn(x.shape, generator=gen)
        log_q += Normal(mean, std).log_prob(xt).flatten(1).sum(1)
        states.append(xt)
    log_p = Normal(0.0, 1.0).log_prob(states[3]).flatten(1).sum(1).double()
    with torch.no_grad():
        for step in (2, 1):
            i = torch.full((n,), step)
            mean, logvar, _ = model.p_mean_logvar(net(states[step + 1], i), states[step + 1], i)
            log_p += Normal(mean, (0.5 * logvar).exp()).log_prob(states[step]).flatten(1).sum(1)
        i = torch.zeros(n, dtype=torch.long)
        mean, logvar, _ = model.p_mean_logvar(net(states[1], i), states[1], i)
        log_p += discretized_gaussian_log_prob(states[0], mean, 0.5 * logvar, LEVELS).flatten(1).sum(1)
        elbo = log_p - log_q
        bound = model.log_prob_bound(x, generator=gen) - spec.dim * math.log(LEVELS)
    se = math.sqrt(elbo.var() / n + bound.var() / n)
    assert abs(float(elbo.mean() - bound.mean())) < 4 * se, (float(elbo.mean()), float(bound.mean()), se)
    assert se < 0.1 and float(-bound.mean()) > 3.0  # precise enough to see a term off by half a nat


def test_bound_terms_cover_every_timestep_in_chunks_and_follow_the_generator() -> None:
    model = tiny_model(timesteps=7, bound_batch=4)  # 4 images per call: one timestep of 3 images at a time
    x = levels_batch(3)
    terms = model.bound_terms(x, torch.Generator().manual_seed(0))
    assert terms.shape == (3, 8) and torch.isfinite(terms).all() and (terms[:, 1:] >= 0).all()
    again = model.bound_terms(x, torch.Generator().manual_seed(0))
    assert torch.equal(terms, again)
    lp = model.log_prob_bound(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lp, -terms.double().sum(1) + SPEC.dim * math.log(LEVELS))
    with pytest.raises(ValueError, match="k = 1 only"):
        model.log_prob_bound(x, k=2)
    assert model.likelihood_protocol()["timesteps"] == 7


def test_ddim_with_eta_zero_is_deterministic_given_the_noise() -> None:
    model = tiny_model(timesteps=10)
    a = model.denoise_ddim(4, 5, 0.0, torch.Generator().manual_seed(0))
    b = model.denoise_ddim(4, 5, 0.0, torch.Generator().manual_seed(0))
    c = model.denoise_ddim(4, 5, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # eta = 0: x_T is the only randomness; eta = 1 draws more from the generator and lands elsewhere
    assert not torch.allclose(a, model.denoise_ddim(4, 5, 1.0, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("clip", [True, False])
def test_ddim_eta_one_on_every_step_is_the_ancestral_sampler(clip: bool) -> None:
    """Song et al.: eta = 1 on all T steps has variance beta~_t and the posterior mean, so it is DDPM
    with `fixed_small` step for step (float64, so round-off does not hide a difference)."""
    model = tiny_model(timesteps=10, double=True, clip_denoised=clip)
    ddpm = model.denoise_ddpm(4, torch.Generator().manual_seed(0))
    ddim = model.denoise_ddim(4, 10, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(model.denoise_ddim(4, 10, 0.0, torch.Generator().manual_seed(0)), ddpm, atol=1e-3)
    large = tiny_model(timesteps=10, double=True, clip_denoised=clip, variance="fixed_large")
    assert not torch.allclose(
        large.denoise_ddim(4, 10, 1.0, torch.Generator().manual_seed(0)),
        large.denoise_ddpm(4, torch.Generator().manual_seed(0)),
        atol=1e-3,
    )  # with beta_t as variance the two differ: the equality is a property of beta~_t


def test_every_mode_samples_the_levels_with_the_network_evaluations_it_reports() -> None:
    model = tiny_model(timesteps=20)
    assert model.sampling_modes == ("ddim2", "ddpm20", "ddim5", "ddim20")
    calls = []
    model.ema.register_forward_hook(lambda *_: calls.append(1))
    for mode in model.sampling_modes:
        calls.clear()
        x = model.sample(3, torch.Generator().manual_seed(0), mode)
        assert x.shape == (3, *SPEC.shape) and x.min() >= 0 and x.max() <= 1
        assert torch.equal(x * (LEVELS - 1), (x * (LEVELS - 1)).round())  # on the data's levels
        assert len(calls) == model.network_evaluations(mode), mode
    assert model.describe()["network_evaluations"] == {"ddim2": 2, "ddpm20": 20, "ddim5": 5, "ddim20": 20}
    assert ddim_timesteps(4, 10) == [9, 6, 3, 0] and ddim_timesteps(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match="unknown sampling mode 'ddim7'"):
        model.sample(1, mode="ddim7")


def test_hybrid_loss_trains_the_variance_only_through_the_bound() -> None:
    model = tiny_model(timesteps=10, variance="learned")
    model.configure_optimizers()
    out = model.train_step(levels_batch(8))
    assert list(out) == ["loss", "mse", "vlb_bits_per_dim"] and all(math.isfinite(v) for v in out.values())
    x0, i = 2 * levels_batch(8) - 1, torch.arange(8) % 10
    xt = model.q_sample(x0, i, torch.randn_like(x0))
    out = model.net(xt, i)
    out.retain_grad()
    model.terms_at(out, x0, xt, i, stop_mean_grad=True).sum().backward()
    assert (out.grad[:, :1] == 0).all() and (out.grad[:, 1:] != 0).any()  # eps channels get nothing, v channels do
    model.zero_grad()
    out = model.net(xt, i)
    out.retain_grad()
    model.terms_at(out, x0, xt, i).sum().backward()
    assert (out.grad[:, :1] != 0).any()  # without the stop the bound would train the mean too


def test_resumed_training_is_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    data = levels_batch(32)
    cfg = {"batch_size": 8, "checkpoint_every": 2, "log_every": 1, "device": "cpu"}

    def fresh() -> DDPM:
        seed_everything(0)
        model = DDPM(SPEC, timesteps=10, **{**TINY, "ema_decay": 0.5, "warmup_steps": 3})
        model.configure_optimizers()
        return model

    straight = fresh()
    train(straight, data, TrainConfig(max_steps=4, **cfg), tmp_path / "a", 0, {})
    first = fresh()
    train(first, data, TrainConfig(max_steps=2, **cfg), tmp_path / "b", 0, {})
    resumed = fresh()  # a new process would rebuild the model and find the checkpoint
    result = train(resumed, data, TrainConfig(max_steps=4, **cfg), tmp_path / "b", 0, {})
    assert result.resumed_from == 2
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["ema.conv_out.weight"], a["net.conv_out.weight"])  # the average is its own state
    g = torch.Generator
    assert torch.equal(straight.sample(4, g().manual_seed(0)), resumed.sample(4, g().manual_seed(0)))


@pytest.mark.parametrize(
    ("shape", "sizes"), [((1, 8, 8), [8, 4]), ((1, 28, 28), [28, 14, 7]), ((3, 32, 32), [32, 16, 8, 4])]
)
def test_digits_mnist_and_cifar_shapes_train_score_and_sample(shape: tuple[int, ...], sizes: list[int]) -> None:
    assert resolutions(shape[1], shape[2]) == sizes  # CIFAR-10: the paper's four resolutions
    levels = 17 if shape[1] == 8 else 256
    spec = DataSpec("shape", shape, levels, (0.0, 1.0), 10, 10, "synthetic")
    torch.manual_seed(0)
    model = DDPM(spec, timesteps=4, channels=8, ddim_steps=[2], default_mode="ddim2")
    model.configure_optimizers()
    x = torch.randint(0, levels, (2, *shape)).float() / (levels - 1)
    assert math.isfinite(model.train_step(x)["loss"])
    assert torch.isfinite(model.log_prob_bound(x)).all()
    assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, *shape)
    attention = [m for m in model.net.down.modules() if isinstance(m, SelfAttention)]
    assert len(attention) == 1  # one block per resolution; attention at 16 where there is one, else the coarsest


def test_bad_input_gets_one_clear_error() -> None:
    with pytest.raises(GenbenchError, match="model=ddpm needs an image dataset"):
        DDPM(DataSpec("toy2d", (2,), None, (-3.0, 3.0), 10, 10, "synthetic"))
    with pytest.raises(GenbenchError, match="unknown DDPM variance 'learnt'; accepted: fixed_small"):
        DDPM(SPEC, variance="learnt", **TINY)
    with pytest.raises(GenbenchError, match="default_mode 'ddim50' is not a mode.*accepted: ddpm20, ddim10, ddim20"):
        DDPM(SPEC, timesteps=20, channels=8, ddim_steps=[10, 50])
