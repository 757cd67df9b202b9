"""VAE: the discretized logistic is a distribution, IWAE-k >= ELBO, chunking bounds memory."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data import DataSpec
from models.vae import TOY_KL_WARMUP, TOY_MAX_GRAD_NORM, VAE, discretized_logistic_log_prob

STEPS_FIT = 1500  # training steps of the ring8 fit test


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


# ----------------------------------------------------------------------------- toy 2-D data: KL warm-up


def toy_vae(**kwargs: object) -> VAE:
    torch.manual_seed(0)
    vae = VAE(spec((2,), None), latent_dim=4, width=4, **kwargs)
    vae.configure_optimizers()
    return vae


def true_bound(vae: VAE, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """IWAE-k written out from the model's parts with the KL term at weight 1 (the same noise as log_prob_bound)."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = vae.encoder(x)
    eps = torch.randn((k, *mu.shape), generator=gen)
    z = mu + torch.exp(0.5 * logvar) * eps
    normal = torch.distributions.Normal(0.0, 1.0)
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    mean, log_std = vae.decoder(z.reshape(-1, z.shape[-1]))
    log_lik = torch.distributions.Normal(mean, log_std.exp()).log_prob(x.repeat(k, 1)).sum(-1).view(k, len(x))
    return torch.logsumexp(log_lik + normal.log_prob(z).sum(-1) - log_q, 0) - math.log(k)


def test_toy_default_warms_up_the_kl_and_images_do_not() -> None:
    toy, image = toy_vae(), VAE(spec((1, 8, 8), 17), latent_dim=4, width=4)
    assert toy.kl_warmup == TOY_KL_WARMUP > 0 and image.kl_warmup == 0
    # the image VAE is as before: no step counter in its state dict, full KL weight, the same scalars
    assert "updates" not in image.state_dict() and image.kl_weight() == 1.0
    image.configure_optimizers()
    assert set(image.train_step(torch.randint(0, 17, (4, 1, 8, 8)) / 16)) == {"loss_nats_per_dim"}


def global_grad_norm(model: torch.nn.Module) -> float:
    return math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None))


def test_toy_training_clips_the_gradient_norm_and_logs_it_before_the_clip() -> None:
    assert toy_vae().max_grad_norm == TOY_MAX_GRAD_NORM > 0
    assert VAE(spec((1, 8, 8), 17), latent_dim=4, width=4).max_grad_norm == 0  # images: off, as before
    x = torch.full((8, 2), 30.0)  # far from where the decoder puts its mass: a gradient far above the clip
    unclipped = toy_vae(max_grad_norm=0)
    assert "grad_norm" not in unclipped.train_step(x)
    raw = global_grad_norm(unclipped)
    assert raw > 10 * TOY_MAX_GRAD_NORM
    clipped = toy_vae()  # the same weights (seeded), the same batch and noise
    scalars = clipped.train_step(x)
    assert float(scalars["grad_norm"]) == pytest.approx(raw, rel=1e-4)  # what the step would have been
    assert global_grad_norm(clipped) == pytest.approx(TOY_MAX_GRAD_NORM, rel=1e-4)  # what it was
    with pytest.raises(ValueError, match="max_grad_norm"):
        toy_vae(max_grad_norm=-1.0)


def test_the_image_path_of_the_model_config_is_unaffected(compose: object) -> None:
    from omegaconf import OmegaConf

    from genbench.pipeline import build_model

    cfg = compose(["model=vae", "dataset=digits"])
    assert cfg.model.kl_warmup is None  # the config leaves it to the model: 0 on images, TOY_KL_WARMUP on toy data
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert build_model(model_cfg, spec((1, 8, 8), 17)).kl_warmup == 0
    assert build_model(model_cfg, spec((2,), None)).kl_warmup == TOY_KL_WARMUP


def test_kl_weight_rises_linearly_to_one_and_survives_a_reload() -> None:
    vae = toy_vae(kl_warmup=4)
    x = torch.randn(8, 2)
    weights = [vae.train_step(x)["kl_weight"] for _ in range(6)]
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    fresh = toy_vae(kl_warmup=4)
    vae2 = toy_vae(kl_warmup=4)
    vae2.train_step(x)
    fresh.load_state_dict(vae2.state_dict())  # a resumed run continues the schedule where the checkpoint was
    assert int(fresh.updates) == 1 and fresh.kl_weight() == 0.5


def test_training_uses_the_annealed_objective_but_the_evaluated_bound_has_kl_weight_one() -> None:
    x = torch.randn(16, 2)
    vae = toy_vae(kl_warmup=1000)
    for _ in range(3):
        vae.train_step(x)
    assert 0 < vae.kl_weight() < 0.01  # deep in the warm-up
    with torch.no_grad():
        for k in (1, 8):
            got = vae.log_prob_bound(x, k, generator=torch.Generator().manual_seed(5))
            assert torch.allclose(got, true_bound(vae, x, k, 5), atol=1e-4)
        # and it does not move with the schedule: the same weights at the end of warm-up give the same bound
        before = vae.log_prob_bound(x, 8, generator=torch.Generator().manual_seed(5))
        vae.updates.fill_(10**6)
        vae.load_state_dict(vae.state_dict())
        assert vae.kl_weight() == 1.0
        assert torch.equal(before, vae.log_prob_bound(x, 8, generator=torch.Generator().manual_seed(5)))
        # while training's objective is the annealed one: its loss differs from the true bound's
        vae.updates.fill_(3)
        vae.load_state_dict(vae.state_dict())
        annealed = torch.logsumexp(vae._log_weights(x, 8, torch.Generator().manual_seed(5), vae.kl_weight()), 0)
        assert not torch.allclose(annealed - math.log(8), before, atol=1e-3)


def gaussian_kl_to_truth(data: object) -> float:
    """KL from the truth to the moment-matched Gaussian of the training split, on the test split (nats)."""
    train = data.train.double()
    fitted = torch.distributions.MultivariateNormal(train.mean(0), torch.cov(train.T))
    return float((data.density.log_density(data.test) - fitted.log_prob(data.test.double())).mean())


@pytest.mark.parametrize("train_k", [1, pytest.param(8, marks=pytest.mark.slow)])  # IWAE-8: ~20 s more
def test_toy_vae_fits_ring8_well_below_a_single_gaussian(train_k: int) -> None:
    from genbench.data import load_toy2d
    from genbench.train import BatchSampler

    torch.manual_seed(0)
    data = load_toy2d("ring8", n_train=20_000, n_test=1000)
    vae = VAE(data.spec, width=32, train_k=train_k)
    vae.configure_optimizers()
    batches = BatchSampler(data.train, 64, 0)
    for step in range(STEPS_FIT):
        vae.train_step(batches.batch(step))
    with torch.no_grad():
        log_model = vae.log_prob_bound(data.test, 100, generator=torch.Generator().manual_seed(0)).double()
    kl = float((data.density.log_density(data.test) - log_model).mean())
    gaussian = gaussian_kl_to_truth(data)
    assert gaussian > 3.0  # the collapsed model's KL (3.23 nats)
    assert kl < gaussian - 1.0, (kl, gaussian)
