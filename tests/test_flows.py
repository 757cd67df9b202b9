"""NICE and RealNVP (models/flows.py, models/flow_layers.py): invertibility, brute-force log-determinants,
normalised densities, a toy flow against the true entropy, the toy flow's recipe (identity at initialisation,
log-scale clamps, the weights' moving average), digits training without NaN, and the pipeline."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch.autograd.functional import jacobian

from genbench.data import DataSpec, ToyMixture, dequantize, load_digits_data, load_toy2d
from genbench.datasets import load_dataset
from genbench.metrics.likelihood import kl_to_truth_metrics
from genbench.model import has_decoder
from genbench.pipeline import bench
from genbench.results import find_metric
from genbench.train import BatchSampler
from models.flow_layers import (
    MLP,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowLayer,
    LogitTransform,
    ResNet,
    Scaling,
    Squeeze,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    logistic_log_prob,
)
from models.flows import NICE, RealNVP

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
DIGITS = DataSpec("digits", (1, 8, 8), 17, (0.0, 1.0), 1500, 297, "test")
TOY = DataSpec("toy2d", (2,), None, (-3.0, 3.0), 1000, 1000, "test")


def perturb(module: torch.nn.Module, std: float = 0.3, seed: int = 0) -> None:
    """Move every parameter off its initial value: zero-initialised couplings are the identity, which
    would make every log-determinant check trivially 0 == 0."""
    perturb_tensors(module.parameters(), std, seed)


def perturb_tensors(tensors: Iterable[torch.Tensor], std: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tensors:
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def brute_log_det(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Per-example `log|det J|` from the full autograd Jacobian of a batch; also checks that the Jacobian
    is block-diagonal (no example influences another)."""
    b, d = x.shape[0], x[0].numel()
    jac = jacobian(lambda v: fn(v.view_as(x)).reshape(b * d), x.reshape(b * d))  # (B*D, B*D)
    jac = jac.view(b, d, b, d)
    idx = torch.arange(b)
    blocks = jac[idx, :, idx, :]  # (B, D, D): example b's own Jacobian
    off = jac.clone()
    off[idx, :, idx, :] = 0.0
    assert off.abs().max() == 0.0, "an example's output depends on another example"
    return torch.linalg.slogdet(blocks).logabsdet


def layer_cases() -> dict[str, tuple[Callable[[], FlowLayer], tuple[int, ...]]]:
    """Every layer type, built small, with the input shape (one batch) it is checked on."""
    return {
        "additive_coupling": (lambda: AdditiveCoupling(alternating_mask(6, 1), MLP(6, 6, 16, 2)), (3, 6)),
        "affine_coupling_checkerboard": (
            lambda: AffineCoupling(checkerboard_mask(2, 4, 4, 0), ResNet(2, 4, 8, 1)),
            (3, 2, 4, 4),
        ),
        "affine_coupling_channel": (lambda: AffineCoupling(channel_mask(4, 2, 2, 1), ResNet(4, 8, 8, 1)), (3, 4, 2, 2)),
        "affine_coupling_mlp": (lambda: AffineCoupling(alternating_mask(2, 0), MLP(2, 4, 16, 2)), (3, 2)),
        "affine_coupling_mlp_unclamped": (
            lambda: AffineCoupling(alternating_mask(2, 1), MLP(2, 4, 16, 2), clamp=None),
            (3, 2),
        ),
        "affine_coupling_mlp_soft_clamp": (
            lambda: AffineCoupling(alternating_mask(2, 0), MLP(2, 4, 16, 2), clamp=0.5),
            (3, 2),
        ),
        "squeeze": (Squeeze, (3, 2, 4, 4)),
        "scaling": (lambda: Scaling(6), (3, 6)),
        "actnorm": (lambda: ActNorm(3), (3, 3, 2, 2)),
        "logit": (lambda: LogitTransform(0.05), (3, 2, 4, 4)),
    }


def build_layer(name: str) -> tuple[FlowLayer, torch.Tensor]:
    factory, shape = layer_cases()[name]
    torch.manual_seed(0)
    layer = factory().double()
    x = torch.rand(shape, dtype=torch.float64) * 0.9 + 0.05  # inside (0, 1), so the logit is defined
    if isinstance(layer, ActNorm):
        layer.train()
        layer(torch.randn(8, *shape[1:], dtype=torch.float64) * 2 + 1)  # data-dependent initialisation
    perturb(layer)
    return layer.eval(), x


@pytest.mark.parametrize("name", list(layer_cases()))
def test_every_layer_inverts_and_its_log_det_matches_the_brute_force_jacobian(name: str) -> None:
    layer, x = build_layer(name)
    z, log_det = layer(x)
    assert log_det.shape == (x.shape[0],)
    assert (layer.inverse(z) - x).abs().max() < 1e-12  # float64 round trip
    expected = brute_log_det(lambda v: layer(v)[0], x)
    torch.testing.assert_close(log_det, expected, rtol=1e-9, atol=1e-9)
    if name in ("squeeze", "additive_coupling"):  # volume preserving: the brute force must agree on 0
        assert torch.equal(log_det, torch.zeros_like(log_det))
    else:
        assert expected.abs().min() > 1e-3  # the check is not 0 == 0


def test_actnorm_initialises_from_its_first_training_batch() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3, 4, 4) * torch.tensor([0.5, 2.0, 4.0]).view(1, 3, 1, 1) + 3.0
    layer = ActNorm(3).train()
    z, _ = layer(x)
    per_channel = z.transpose(0, 1).flatten(1)  # (C, B*H*W)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    before = layer.loc.detach().clone()
    layer(x + 10.0)  # a second batch must not re-initialise
    assert torch.equal(layer.loc, before)


def small_flows() -> dict[str, Callable[[], NICE | RealNVP]]:
    return {
        "nice_digits": lambda: NICE(DIGITS, hidden=16, n_hidden=2),
        "nice_digits_logit": lambda: NICE(DIGITS, hidden=16, n_hidden=2, logit_alpha=0.05),
        "realnvp_digits_2_scales": lambda: RealNVP(DIGITS, n_scales=2, hidden=4, n_blocks=1),
        "realnvp_digits_3_scales": lambda: RealNVP(DIGITS, n_scales=3, hidden=4, n_blocks=1),
        "nice_toy": lambda: NICE(TOY, hidden=16, n_hidden=2),
        "realnvp_toy": lambda: RealNVP(TOY, n_couplings=4, mlp_hidden=16),
        "realnvp_toy_soft_clamp": lambda: RealNVP(TOY, n_couplings=4, mlp_hidden=16, toy_clamp=3.0),
        "realnvp_toy_unclamped": lambda: RealNVP(TOY, n_couplings=4, mlp_hidden=16, toy_clamp=None),
        "realnvp_toy_former": lambda: RealNVP(TOY, n_couplings=4, mlp_hidden=16, **FORMER_TOY),
    }


# The toy recipe before issue 15, still reachable through the arguments (benchmarks/toy_flows_vs_normflows.py).
FORMER_TOY = {"toy_actnorm": True, "toy_ema_decay": None}


def initialised(name: str, dtype: torch.dtype = torch.float64) -> tuple[NICE | RealNVP, torch.Tensor]:
    """A small flow with ActNorm initialised on a batch, parameters perturbed, in eval mode; and a test batch.

    A flow with a moving average of its weights gets the average perturbed too (with other draws), so eval mode,
    which uses the average, is not left at the identity of the zero-initialised couplings."""
    torch.manual_seed(0)
    model = small_flows()[name]().to(dtype)
    shape = model.spec.shape
    data = (lambda n: torch.randn(n, *shape)) if model.is_toy else (lambda n: torch.rand(n, *shape) * 0.9 + 0.05)
    model.train()
    model.forward_flow(data(32).to(dtype))
    perturb(model, std=0.05)
    if model.ema_decay is not None:
        perturb_tensors(model.ema.buffers(), std=0.05, seed=1)
    return model.eval(), data(2).to(dtype)


@pytest.mark.parametrize("name", list(small_flows()))
def test_whole_flow_log_det_matches_the_brute_force_jacobian_in_float64(name: str) -> None:
    model, y = initialised(name)
    z, log_det = model.forward_flow(y)
    assert z.shape == (2, model.latent_dim) and model.latent_dim == model.spec.dim
    expected = brute_log_det(lambda v: model.forward_flow(v)[0], y)
    torch.testing.assert_close(log_det, expected, rtol=1e-9, atol=1e-8)
    torch.testing.assert_close(model.log_prob_continuous(y), model.prior_log_prob(z) + expected)


@pytest.mark.parametrize("name", [n for n in small_flows() if n.startswith("realnvp_toy")])
def test_toy_flow_log_det_is_not_trivially_zero(name: str) -> None:
    model, y = initialised(name)
    expected = brute_log_det(lambda v: model.forward_flow(v)[0], y)
    assert expected.abs().min() > 1e-3  # the brute-force check above is not 0 == 0 for the toy flows


@pytest.mark.parametrize("name", list(small_flows()))
def test_whole_flow_inverts_in_float32_and_float64(name: str) -> None:
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-12)):
        model, y = initialised(name, dtype)
        err = (model.inverse_flow(model.forward_flow(y)[0]) - y).abs().max()
        assert err < tol, f"{dtype}: max round-trip error {err:.2e}"


def test_multiscale_factors_out_half_at_each_scale_and_refuses_bad_sizes() -> None:
    assert RealNVP(DIGITS, n_scales=2).z_shapes == [(2, 4, 4), (2, 4, 4)]
    assert RealNVP(DIGITS, n_scales=3).z_shapes == [(2, 4, 4), (4, 2, 2), (4, 2, 2)]
    mnist = DataSpec("mnist", (1, 28, 28), 256, (0.0, 1.0), 1, 1, "test")
    with pytest.raises(ValueError, match="n_scales=4 needs H and W divisible by 8"):
        RealNVP(mnist, n_scales=4)


def test_logistic_prior_density_and_sampler() -> None:
    z = torch.linspace(-30, 30, 200_001, dtype=torch.float64)
    density = logistic_log_prob(z[:, None]).exp()
    assert abs(float(torch.trapezoid(density, z)) - 1.0) < 1e-9
    assert abs(float(density[100_000]) - 0.25) < 1e-12  # the standard logistic pdf at 0 is 1/4
    model = NICE(TOY, prior="logistic")
    draws = model.prior_sample(200_000, torch.Generator().manual_seed(0)).double()
    assert abs(float(draws.var()) - math.pi**2 / 3) < 0.05  # variance of the standard logistic


@pytest.mark.parametrize(
    ("name", "prior"), [("nice_toy", "logistic"), ("nice_toy", "gaussian"), ("realnvp_toy", "gaussian")]
)
def test_toy_density_integrates_to_one(name: str, prior: str) -> None:
    model, _ = initialised(name)
    model.prior = prior
    grid = torch.linspace(-12, 12, 241, dtype=torch.float64)
    xy = torch.cartesian_prod(grid, grid)  # (241*241, 2)
    with torch.no_grad():
        density = model.log_prob(xy).exp().view(241, 241)
    mass = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid)
    assert abs(float(mass) - 1.0) < 2e-3, float(mass)


@pytest.mark.parametrize("cls", [NICE, RealNVP])
def test_log_prob_dequantizes_reproducibly_and_samples_stay_in_range(cls: type) -> None:
    torch.manual_seed(0)
    model = cls(DIGITS).eval()
    assert model.likelihood == "exact" and model.data_variant == "dequantized"
    assert not has_decoder(model) and not hasattr(model, "decode")
    x = torch.randint(0, 17, (5, 1, 8, 8)).float() / 16  # pipeline units k/(L-1)
    lp = model.log_prob(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(lp, model.log_prob(x, generator=torch.Generator().manual_seed(3)))
    y = dequantize(x, 17, torch.Generator().manual_seed(3))
    torch.testing.assert_close(lp, model.log_prob_continuous(y))
    assert not torch.allclose(lp, model.log_prob(x, generator=torch.Generator().manual_seed(4)))
    s = model.sample(7, torch.Generator().manual_seed(1))
    assert s.shape == (7, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert torch.equal(s, model.sample(7, torch.Generator().manual_seed(1)))
    assert len(torch.unique(s)) > 17  # not quantized


def test_a_loaded_checkpoint_keeps_its_actnorm_and_log_prob() -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 17, (16, 1, 8, 8)).float() / 16
    model = RealNVP(DIGITS, hidden=4)
    model.configure_optimizers()
    model.train_step(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = RealNVP(DIGITS, hidden=4)
    loaded.load_state_dict(state)
    lp_loaded = loaded.eval().log_prob(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(lp_loaded, model.eval().log_prob(x, torch.Generator().manual_seed(0)))
    loaded.train().forward_flow(torch.rand(16, 1, 8, 8))  # a training pass must not re-initialise ActNorm
    torch.testing.assert_close(loaded.state_dict(), state)


def model_kwargs(name: str) -> dict:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    return {k: v for k, v in cfg.items() if k not in ("name", "_target_")}


@pytest.mark.parametrize(("cls", "name"), [(NICE, "nice"), (RealNVP, "realnvp")])
def test_default_config_trains_on_digits_without_nan(cls: type, name: str) -> None:
    data = load_digits_data()
    torch.manual_seed(0)
    model = cls(data.spec, **model_kwargs(name))
    model.configure_optimizers()
    losses = [model.train_step(data.train[i * 64 : (i + 1) * 64])["loss"] for i in range(20)]
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns at the default learning rate


@pytest.fixture(scope="module")
def trained_toy_flow() -> tuple[RealNVP, torch.Tensor]:
    """RealNVP (6 MLP couplings) trained 300 steps of 256 on ring8, lr 5e-3 with cosine decay (a few CPU seconds)."""
    data = load_toy2d("ring8", n_train=20_000, n_test=2_000)
    torch.manual_seed(0)
    model = RealNVP(data.spec, n_couplings=6, mlp_hidden=64, lr=5e-3)
    optimizer = model.configure_optimizers()["flow"]
    steps = 300
    for i in range(steps):
        # Decaying the step size removes most of the end-of-run noise a short run would otherwise be scored at.
        optimizer.param_groups[0]["lr"] = 5e-3 * 0.5 * (1 + math.cos(math.pi * i / steps))
        model.train_step(data.train[torch.randint(len(data.train), (256,))])
    return model.eval(), data.test


def test_trained_toy_flow_is_near_but_not_below_the_true_entropy(trained_toy_flow: tuple) -> None:
    model, test = trained_toy_flow
    with torch.no_grad():
        nll = -model.log_prob(test).double()
    entropy, entropy_se = ToyMixture("ring8").entropy()
    se = math.sqrt(float(nll.var()) / len(nll) + entropy_se**2)
    # A model can not beat the truth on average: NLL >= H (up to noise). H = 0.31 nats; a Gaussian fit would
    # sit at ln(2 pi e 2.01) = 3.54. With the toy defaults of issue 15 (no ActNorm, the weights' moving average)
    # this recipe's gap NLL - H was 0.865 to 0.987 nats over seeds 0-4 (0.927 at seed 0, the one used here; the
    # former recipe: 0.86 to 1.18), so 1.25 is the margin we can honestly claim for 300 steps.
    assert float(nll.mean()) >= entropy - 3 * se
    assert float(nll.mean()) <= entropy + 1.25


def test_trained_toy_flow_density_integrates_to_one(trained_toy_flow: tuple) -> None:
    model, _ = trained_toy_flow
    grid = torch.linspace(-3.5, 3.5, 281)  # spacing 0.025, a quarter of the data's sigma
    xy = torch.cartesian_prod(grid, grid)  # (281*281, 2)
    with torch.no_grad():
        density = model.log_prob(xy).double().exp().view(281, 281)
    mass = torch.trapezoid(torch.trapezoid(density, grid.double(), dim=1), grid.double())
    assert abs(float(mass) - 1.0) < 0.02, float(mass)


@pytest.mark.parametrize("name", ["nice", "realnvp"])
def test_bench_records_an_exact_nll_bpd(name: str, compose: Callable[..., DictConfig]) -> None:
    # FID is off here only to keep this file fast; test_pipeline.py benches every model yaml with it on.
    record = bench(compose([f"model={name}", "train.max_steps=3", "eval=fast", "eval.fid.enabled=false"]))
    # the exact density of dequantized data is a lower bound on the discrete log-likelihood: recorded as such
    metric = find_metric(record, "nll_bpd")
    assert metric is not None and metric["kind"] == "lower_bound" and metric["method"] == "dequantized"
    assert metric["data"] == "discrete" and metric["dequantized"] is True
    assert math.isfinite(metric["value"]) and metric["n"] > 0
    assert record["model_info"]["latent_dim"] == 64


# ----------------------------------------------------------------------------- the toy flow's recipe (issue 15)


def test_default_toy_realnvp_starts_as_the_identity_without_actnorm() -> None:
    torch.manual_seed(0)
    model = RealNVP(TOY, **model_kwargs("realnvp"))
    assert not any(isinstance(m, ActNorm) for m in model.modules())
    couplings = [m for m in model.modules() if isinstance(m, AffineCoupling)]
    assert len(couplings) == 6 and all(c.clamp == "learned" for c in couplings)
    assert model.ema_decay == 0.999
    x = torch.randn(16, 2) * 3
    for training in (True, False):
        model.train(training)
        z, log_det = model.forward_flow(x)
        assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(16))
        torch.testing.assert_close(model.inverse_flow(x), x)


def test_the_former_toy_recipe_is_still_reachable_with_its_size() -> None:
    former = RealNVP(TOY, **FORMER_TOY)
    assert sum(isinstance(m, ActNorm) for m in former.modules()) == 6
    assert former.ema_decay is None and not any(k.startswith("ema") for k in former.state_dict())
    assert sum(p.numel() for p in former.parameters()) == 27_708  # the 27.7k of issue 15
    # without the ActNorms: 6 x (2*64+64 + 64*64+64 + 64*4+4 + 2 tanh scales)
    assert sum(p.numel() for p in RealNVP(TOY).parameters()) == 27_684


@pytest.mark.parametrize(
    ("clamp", "expected"), [(None, 50.0), (2.0, 2.0 * math.tanh(25.0)), ("learned", math.tanh(50))]
)
def test_coupling_log_scale_maps(clamp: str | float | None, expected: float) -> None:
    layer = AffineCoupling(alternating_mask(2, 0), MLP(2, 4, 8, 1), clamp=clamp)
    with torch.no_grad():
        layer.net[-1].bias.copy_(torch.tensor([50.0, 50.0, 0.0, 0.0]))  # raw log-scale 50 on both coordinates
    x = torch.randn(5, 2, dtype=torch.float64)
    z, log_det = layer.double()(x)
    torch.testing.assert_close(log_det, torch.full((5,), expected, dtype=torch.float64))  # one free coordinate
    torch.testing.assert_close(z[:, 0], x[:, 0])  # the kept coordinate passes unchanged


def test_coupling_refuses_a_bad_clamp() -> None:
    for bad in (0.0, -1.0, "tanh"):
        with pytest.raises(ValueError, match="clamp="):
            AffineCoupling(alternating_mask(2, 0), MLP(2, 4, 8, 1), clamp=bad)


def ring8_batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [ToyMixture("ring8").sample(64, gen) for _ in range(n)]


def small_toy(decay: float | None = 0.9) -> RealNVP:
    torch.manual_seed(0)
    model = RealNVP(TOY, n_couplings=2, mlp_hidden=8, toy_ema_decay=decay)
    model.configure_optimizers()
    return model


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_eval_mode_uses_the_moving_average_and_training_mode_the_live_weights() -> None:
    model = small_toy(decay=0.9)
    average = params(model)
    for n, x in enumerate(ring8_batches(30)):
        model.train_step(x)
        decay = min(0.9, (1 + n) / (10 + n))  # the warm-up of `enable_ema`
        average = [decay * a + (1 - decay) * p for a, p in zip(average, params(model), strict=True)]
    live = params(model)
    for _ in range(2):  # switching twice to the same mode changes nothing
        model.eval()
        for p, a in zip(model.parameters(), average, strict=True):
            torch.testing.assert_close(p.detach(), a, rtol=1e-5, atol=1e-6)
    assert not all(torch.allclose(p, q) for p, q in zip(params(model), live, strict=True))
    for _ in range(2):
        model.train()
        assert all(torch.equal(p, q) for p, q in zip(params(model), live, strict=True))


def test_a_state_dict_from_either_mode_loads_back_the_same_live_and_average_weights() -> None:
    model = small_toy()
    for x in ring8_batches(10):
        model.train_step(x)
    test = ring8_batches(1, seed=1)[0]
    live = params(model.train())
    average, log_p = params(model.eval()), model.log_prob(test).detach()
    for saved_in_training in (True, False):
        state = copy.deepcopy(model.train(saved_in_training).state_dict())
        for load_in_training in (True, False):
            loaded = small_toy().train(load_in_training)
            loaded.load_state_dict(state)
            assert all(
                torch.equal(p, q) for p, q in zip(params(loaded), live if load_in_training else average, strict=True)
            )
            assert all(torch.equal(p, q) for p, q in zip(params(loaded.train()), live, strict=True))
            torch.testing.assert_close(loaded.eval().log_prob(test), log_p)


def test_resumed_training_continues_the_moving_average_exactly() -> None:
    batches = ring8_batches(12)
    straight = small_toy()
    for x in batches:
        straight.train_step(x)
    first = small_toy()
    for x in batches[:6]:
        first.train_step(x)
    model_state, opt_state = copy.deepcopy(first.state_dict()), copy.deepcopy(first.optimizers["flow"].state_dict())
    resumed = small_toy()
    resumed.load_state_dict(model_state)
    resumed.optimizers["flow"].load_state_dict(opt_state)
    for x in batches[6:]:
        resumed.train_step(x)
    torch.testing.assert_close(resumed.state_dict(), straight.state_dict())
    torch.testing.assert_close(resumed.eval().state_dict(), straight.eval().state_dict())


def test_the_image_path_ignores_the_toy_options() -> None:
    torch.manual_seed(0)
    default = RealNVP(DIGITS, hidden=4)
    torch.manual_seed(0)
    toy_options = RealNVP(DIGITS, hidden=4, toy_actnorm=True, toy_clamp=None, toy_ema_decay=0.5)
    assert default.ema_decay is None and toy_options.ema_decay is None
    torch.testing.assert_close(default.state_dict(), toy_options.state_dict())
    assert not any(k.startswith("ema") for k in default.state_dict())
    assert all(c.clamp == "learned" for c in default.modules() if isinstance(c, AffineCoupling))


def test_ema_refuses_a_decay_outside_0_1() -> None:
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="decay"):
            RealNVP(TOY, toy_ema_decay=bad)


@pytest.mark.slow
def test_default_toy_recipe_leaves_the_gaussian_fit_on_grid25_at_the_issue_setting() -> None:
    """Issue 15's setting (3,000 steps of 64, lr 1e-3, seed 0, the suite's KL to truth). The former recipe sat at
    3.46 nats here, about a Gaussian fit: ActNorm's data-dependent start is the moment-matched Gaussian, where a
    coupling's expected gradient vanishes when the coordinates are independent (grid25), and ActNorm keeps it
    there. Ours reached 1.91 and normflows' RealNVP 2.17 (results/benchmarks/toy_flows_vs_normflows.md)."""
    data = load_dataset("toy2d", mixture="grid25")
    torch.manual_seed(0)
    model = RealNVP(data.spec, **model_kwargs("realnvp"))
    model.configure_optimizers()
    batches = BatchSampler(data.train, 64, seed=0)
    for step in range(3000):
        model.train_step(batches.batch(step))
    lcfg = OmegaConf.create({"n_test": None, "batch_size": 4096, "kl_to_truth": {"enabled": True}})
    (kl,) = kl_to_truth_metrics(model.eval(), data, lcfg, None, lambda n: torch.empty(0))
    assert kl.extra["method"] == "exact"
    assert kl.value < 2.1, kl.value


# ----------------------------------------------------------------------------- the toy NICE's start (off the identity)


def toy_nice_last_layers(model: NICE) -> list[torch.nn.Linear]:
    return [c.net[-1] for c in model.modules() if isinstance(c, AdditiveCoupling)]


def test_default_toy_nice_starts_near_but_not_at_the_identity() -> None:
    """Zero last layers (the identity) leave the wide toy NICE at the moment-matched Gaussian (see `NICE`)."""
    torch.manual_seed(0)
    model = NICE(TOY, **{**model_kwargs("nice"), "hidden": 64})
    last = toy_nice_last_layers(model)
    assert len(last) == 4
    for layer in last:
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        assert 0.025 < float(layer.weight.detach().std()) < 0.075  # N(0, 0.4^2 / 64), 128 draws
    x = torch.randn(256, 2) * 2
    with torch.no_grad():
        z, log_det = model.forward_flow(x)
    assert torch.equal(log_det, torch.zeros(256))  # additive couplings and a scaling at log-scale 0
    shift = (z - x).abs()
    assert float(shift.max()) > 1e-3 and float(shift.mean()) < 0.2  # moved, but only a little


def test_toy_nice_with_toy_init_gain_none_is_the_identity() -> None:
    torch.manual_seed(0)
    model = NICE(TOY, **{**model_kwargs("nice"), "hidden": 64, "toy_init_gain": None})
    assert all(not layer.weight.any() for layer in toy_nice_last_layers(model))
    x = torch.randn(16, 2) * 3
    z, log_det = model.forward_flow(x)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(16))


def test_toy_nice_refuses_a_negative_init_std() -> None:
    with pytest.raises(ValueError, match="toy_init_gain"):
        NICE(TOY, toy_init_gain=-0.1)


@pytest.mark.parametrize("hidden", [16, 64, 256])
def test_default_toy_nice_inverts_and_its_log_det_matches_the_jacobian(hidden: int) -> None:
    torch.manual_seed(0)
    model = NICE(TOY, **{**model_kwargs("nice"), "hidden": hidden})
    with torch.no_grad():
        model.flow.layers[-1].log_scale.copy_(torch.tensor([0.3, -0.7]))  # a non-trivial scaling too
    x = torch.randn(8, 2, dtype=torch.float64) * 2
    model = model.double()
    z, log_det = model.forward_flow(x)
    assert float((z - x * model.flow.layers[-1].log_scale.exp()).detach().abs().max()) > 1e-4  # the couplings act
    torch.testing.assert_close(model.inverse_flow(z), x, atol=1e-10, rtol=0)
    torch.testing.assert_close(log_det, brute_log_det(lambda v: model.forward_flow(v)[0], x))


def test_the_nice_image_path_ignores_toy_init_gain() -> None:
    """The image model, built and trained a few steps at a fixed seed, is the same with the toy option off; its
    initial weights are those of the code before the option existed (the sums were taken there)."""
    data = load_digits_data()
    models = []
    for gain in (0.4, None):
        torch.manual_seed(0)
        model = NICE(data.spec, **{**model_kwargs("nice"), "toy_init_gain": gain})
        if not models:
            state = model.state_dict()
            assert len(state) == 29
            assert sum(float(v.double().sum()) for v in state.values()) == pytest.approx(134.36395590910547, abs=1e-6)
            assert sum(float(v.double().abs().sum()) for v in state.values()) == pytest.approx(5124.0159483, abs=1e-5)
        model.configure_optimizers()
        for i in range(5):
            model.train_step(data.train[i * 64 : (i + 1) * 64])
        models.append(model)
    torch.testing.assert_close(models[0].state_dict(), models[1].state_dict(), rtol=0, atol=0)


def gaussian_fit_kl(data: object) -> float:
    """KL to truth (nats) of the single Gaussian with the training split's mean and covariance."""
    x = data.train.double()
    fit = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=torch.cov(x.T))
    test = data.test.double()
    return float((data.density.log_density(data.test).double() - fit.log_prob(test)).mean())


def toy_nice_kl(data: object, steps: int, **overrides: object) -> float:
    torch.manual_seed(0)
    model = NICE(data.spec, **{**model_kwargs("nice"), **overrides})
    model.configure_optimizers()
    batches = BatchSampler(data.train, 64, seed=0)
    for step in range(steps):
        model.train_step(batches.batch(step))
    lcfg = OmegaConf.create({"n_test": None, "batch_size": 4096, "kl_to_truth": {"enabled": True}})
    (kl,) = kl_to_truth_metrics(model.eval(), data, lcfg, None, lambda n: torch.empty(0))
    return kl.value


def test_toy_nice_at_hidden_64_leaves_the_gaussian_fit_on_ring8() -> None:
    """The bug: at hidden 64 the identity start sat at the Gaussian fit's KL (3.23 nats) for 3,000 steps; the
    default start is more than a nat below it within 1,000."""
    data = load_dataset("toy2d", mixture="ring8", n_test=2000)
    gauss = gaussian_fit_kl(data)
    stuck = toy_nice_kl(data, 1000, hidden=64, toy_init_gain=None)
    fixed = toy_nice_kl(data, 1000, hidden=64)
    assert abs(stuck - gauss) < 0.05, (stuck, gauss)  # the old start: the moment-matched Gaussian
    assert fixed < gauss - 1.0, (fixed, gauss)
