"""Tests of genbench/metrics/likelihood.py against closed forms and brute force."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf

from genbench.data import Dataset, DataSpec, ToyMixture, binarize, split_validation
from genbench.errors import GenbenchError
from genbench.metrics import likelihood as lk
from genbench.metrics import parzen
from genbench.metrics.context import EvalContext
from genbench.metrics.likelihood_inputs import BINARIZE_SEED, DEQUANTIZE_SEED, decoder_scale_inputs
from genbench.model import GenerativeModel

# ----------------------------------------------------------------------------- units


def bpd(log_prob: float, dim: int, levels: int) -> float:
    return float(lk.bits_per_dim(torch.tensor(log_prob, dtype=torch.float64), dim, levels))


def test_bits_per_dim_hand_values_l17_and_l256() -> None:
    # Uniform over levels: log P(k) = -D log L, so log density = 0 and bits/dim = log2 L.
    assert bpd(0.0, 64, 17) == pytest.approx(4.087462841250339, abs=1e-9)
    assert bpd(0.0, 784, 256) == pytest.approx(8.0, abs=1e-9)
    # -100 nats on 8x8 digits: 100 / (64 ln 2) + log2 17 = 2.254211 + 4.087463.
    assert bpd(-100.0, 64, 17) == pytest.approx(6.341673842639345, abs=1e-9)
    # -2000 nats on MNIST: 2000 / (784 ln 2) + 8 = 3.680344 + 8.
    assert bpd(-2000.0, 784, 256) == pytest.approx(11.680344492063682, abs=1e-9)
    # Log density D log L is probability 1 for the observed levels: zero bits.
    assert bpd(784 * math.log(256), 784, 256) == pytest.approx(0.0, abs=1e-9)


def test_chunked_logmeanexp_equals_unchunked_and_never_asks_more_than_chunk() -> None:
    gen = torch.Generator().manual_seed(0)
    weights = 3.0 * torch.randn(1000, 5, generator=gen, dtype=torch.float64)  # (k, B)
    asked: list[int] = []
    cursor = [0]

    def fn(n: int) -> torch.Tensor:
        asked.append(n)
        out = weights[cursor[0] : cursor[0] + n]
        cursor[0] += n
        return out

    got = lk.chunked_logmeanexp(fn, k=1000, chunk=64)
    want = torch.logsumexp(weights, 0) - math.log(1000)
    assert max(asked) <= 64 and sum(asked) == 1000
    torch.testing.assert_close(got, want)


# ----------------------------------------------------------------------------- dispatch


class ExactGauss(GenerativeModel):
    """Standard normal in 2-D: log density known in closed form."""

    likelihood = "exact"

    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (x**2).sum(1) - math.log(2 * math.pi)


class BernoulliHalf(GenerativeModel):
    """Every binary pixel is 1 with probability 1/2: log P = -D log 2, so bits/dim = 1 exactly."""

    likelihood = "lower_bound"
    data_variant = "binarized"

    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def log_prob_bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
        self.seen.append(x)
        return torch.zeros(len(x)) - k * 0.0  # log P(k) + D log 2 = 0


def toy_data(n: int = 50) -> Dataset:
    spec = DataSpec("toy2d", (2,), None, (-3.0, 3.0), n, n, "test")
    gen = torch.Generator().manual_seed(1)
    return Dataset(spec, torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen))


def image_data(n: int = 20) -> Dataset:
    spec = DataSpec("digits", (1, 8, 8), 17, (0.0, 1.0), n, n, "test")
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(0, 17, (3 * n, 1, 8, 8), generator=gen).float() / 16
    return split_validation(Dataset(spec, x[: 2 * n], x[2 * n :]), 0.5)


def eval_cfg(seed: int = 0, **overrides: object) -> object:
    base = {"enabled": True, "n_test": None, "batch_size": 16, "iwae_k": [4, 8], "chunk": 4}
    return OmegaConf.create({"seed": seed, "likelihood": {**base, **overrides}})


def test_exact_model_gets_nats_mean_and_stderr_and_no_bpd_on_toy_data() -> None:
    data = toy_data()
    metrics = lk.evaluate(EvalContext(ExactGauss(data.spec), data, eval_cfg()))
    assert [m.name for m in metrics] == ["nll_nats"]
    nll = 0.5 * (data.test.double() ** 2).sum(1) + math.log(2 * math.pi)
    m = metrics[0]
    assert m.value == pytest.approx(float(nll.mean()))
    assert m.stderr == pytest.approx(float(nll.std() / math.sqrt(len(nll))))
    assert (m.kind, m.n, m.split, m.extra["method"]) == ("exact", 50, "test", "exact")


def test_bound_model_on_binarized_images_gets_elbo_and_each_iwae_k_with_l2() -> None:
    data = image_data()
    model = BernoulliHalf(data.spec)
    metrics = lk.evaluate(EvalContext(model, data, eval_cfg(n_test=10)))
    methods = [(m.name, m.extra["method"]) for m in metrics]
    assert methods == [(n, meth) for meth in ("elbo", "iwae-4", "iwae-8") for n in ("nll_nats", "nll_bpd")]
    for m in metrics:
        assert m.kind == "lower_bound" and m.n == 10 and m.extra["data"] == "binarized"
        if m.name == "nll_bpd":
            assert m.value == pytest.approx(1.0)  # L = 2 for binarized data, not the dataset's 17
    # The same fixed binarization for every call: binary values, reproducible.
    assert torch.equal(model.seen[0], model.seen[-1])
    assert set(model.seen[0].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(model.seen[0], binarize(data.test[:10], torch.Generator().manual_seed(BINARIZE_SEED)))


def test_disabled_and_no_likelihood_give_nothing() -> None:
    data = toy_data()
    assert lk.evaluate(EvalContext(ExactGauss(data.spec), data, eval_cfg(enabled=False))) == []

    class NoDensity(ExactGauss):
        likelihood = "none"

    assert lk.evaluate(EvalContext(NoDensity(data.spec), data, eval_cfg())) == []


# ----------------------------------------------------------------------------- a linear-Gaussian decoder (pPCA)

D_OBS, D_LAT, SIGMA = 6, 2, 0.3


class LinearDecoder(GenerativeModel):
    """x = W z + b (+ noise), z ~ N(0, I): a GAN-like decoder with no observation model of its own."""

    likelihood = "none"

    def __init__(self, spec: DataSpec, seed: int = 0) -> None:
        super().__init__(spec)
        gen = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(D_OBS, D_LAT, generator=gen))
        self.b = torch.nn.Parameter(0.5 * torch.randn(D_OBS, generator=gen))
        self.latent_dim = D_LAT

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T + self.b

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        z = torch.randn(n, D_LAT, generator=generator)
        return self.decode(z) + SIGMA * torch.randn(n, D_OBS, generator=generator)

    def marginal(self) -> torch.distributions.MultivariateNormal:
        """The closed form: p(x) = N(b, W W^T + sigma^2 I)."""
        W, b = self.W.detach().double(), self.b.detach().double()
        return torch.distributions.MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D_OBS, dtype=torch.float64))

    def exact_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.marginal().log_prob(x.double())


class PPCA(LinearDecoder):
    """pPCA with its own observation model and an IWAE bound from a deliberately wrong Gaussian encoder."""

    likelihood = "lower_bound"

    def __init__(self, spec: DataSpec, seed: int = 0) -> None:
        super().__init__(spec, seed)
        self.max_asked = 0

    def log_prob_given_latent(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        sq = (((x - self.decode(z)) / SIGMA) ** 2).sum(1)
        return -0.5 * sq - D_OBS * (math.log(SIGMA) + 0.5 * math.log(2 * math.pi))

    def sample_given_latent(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(z) + SIGMA * torch.randn(len(z), D_OBS, generator=generator)

    def log_prob_bound(self, x: torch.Tensor, k: int, chunk: int = 16) -> torch.Tensor:
        # q(z|x): the exact posterior mean shrunk by 0.7, with a too wide isotropic std: not the posterior.
        W = self.W.detach()
        precision = W.T @ W / SIGMA**2 + torch.eye(D_LAT)
        mean = 0.7 * torch.linalg.solve(precision, W.T @ (x - self.b).T / SIGMA**2).T  # (B, d)
        std = 1.5 * float(torch.linalg.inv(precision).diagonal().mean().sqrt())

        def log_weights(n: int) -> torch.Tensor:
            self.max_asked = max(self.max_asked, n)
            eps = torch.randn(n, *mean.shape)
            z = mean + std * eps  # (n, B, d)
            log_q = -0.5 * (eps**2).sum(-1) - D_LAT * (math.log(std) + 0.5 * math.log(2 * math.pi))
            log_prior = -0.5 * (z**2).sum(-1) - 0.5 * D_LAT * math.log(2 * math.pi)
            x_rep = x.expand(n, *x.shape).reshape(-1, D_OBS)  # (n*B, D)
            log_lik = self.log_prob_given_latent(x_rep, z.reshape(-1, D_LAT)).view(n, -1)
            return log_lik + log_prior - log_q

        return lk.chunked_logmeanexp(log_weights, k, chunk)


def ppca_data(model: LinearDecoder, n_train: int = 64, n_test: int = 48) -> Dataset:
    spec = DataSpec("ppca", (D_OBS,), None, (-10.0, 10.0), n_train, n_test, "test: samples of the pPCA model")
    x = model.sample(n_train + n_test, torch.Generator().manual_seed(3)).detach()
    return split_validation(Dataset(spec, x[:n_train], x[n_train:]), 0.25)


def ais_cfg(**overrides: object) -> dict:
    base = {
        "enabled": True,
        "n_test": 24,
        "batch_size": 24,
        "steps": 300,
        "chains": 8,
        "leapfrog": 1,
        "step_size": 0.5,
        "target_accept": 0.65,
        "sigma_grid": [0.1, 0.3, 1.0],
        "select_n": 24,
        "select_steps": 50,
        "bdmc_n": 0,
    }
    return {**base, **overrides}


def ais_nll(metrics: list) -> object:
    return next(m for m in metrics if m.name == "nll_nats" and m.extra["method"] == "ais")


def test_ais_agrees_with_ppca_closed_form() -> None:
    model = PPCA(DataSpec("ppca", (D_OBS,), None, (-10.0, 10.0), 1, 1, "-"))
    data = ppca_data(model)
    cfg = eval_cfg(iwae_k=[], ais=ais_cfg())
    m = ais_nll(lk.ais_metrics(model, data, cfg.likelihood, torch.Generator().manual_seed(0)))
    exact_nll = float(-model.exact_log_prob(data.test[:24]).mean())
    assert m.kind == "lower_bound" and m.n == 24 and m.extra["obs_model"] == "model"
    assert abs(m.value - exact_nll) < min(m.stderr, 0.2)  # within its standard error over examples
    assert 0.5 < m.extra["accept_rate"] < 0.8  # the step size was steered toward the 0.65 target


def test_gaussian_observation_picks_the_true_sigma_and_matches_closed_form() -> None:
    model = LinearDecoder(DataSpec("ppca", (D_OBS,), None, (-10.0, 10.0), 1, 1, "-"))
    data = ppca_data(model)
    cfg = eval_cfg(iwae_k=[], ais=ais_cfg())
    m = ais_nll(lk.ais_metrics(model, data, cfg.likelihood, torch.Generator().manual_seed(2)))
    assert m.extra["obs_model"] == "gaussian" and m.extra["obs_sigma"] == SIGMA
    assert set(m.extra["obs_sigma_scores"]) == {"0.1", "0.3", "1.0"}
    assert m.extra["obs_sigma_at_grid_edge"] is False
    # With sigma = 0.3 the Gaussian observation model is exactly the pPCA that generated the data.
    assert abs(m.value - float(-model.exact_log_prob(data.test[:24]).mean())) < min(m.stderr, 0.2)


def test_elbo_below_iwae_below_exact_and_iwae_rises_with_k_in_chunks() -> None:
    torch.manual_seed(0)
    model = PPCA(DataSpec("ppca", (D_OBS,), None, (-10.0, 10.0), 1, 1, "-"))
    data = ppca_data(model, n_test=200)
    metrics = lk.evaluate(EvalContext(model, data, eval_cfg(batch_size=50, iwae_k=[4, 64], chunk=8)))
    nll = {m.extra["method"]: m.value for m in metrics}
    exact = float(-model.exact_log_prob(data.test).mean())
    assert list(nll) == ["elbo", "iwae-4", "iwae-64"]
    assert nll["elbo"] > nll["iwae-4"] + 0.05 > nll["iwae-64"] + 0.1 > exact + 0.1 - 0.05
    assert nll["iwae-64"] >= exact
    assert model.max_asked == 8  # cfg.likelihood.chunk reached the model: never 64 samples at once


def test_iwae_with_the_exact_posterior_is_exact_for_every_k() -> None:
    """q = p(z|x): every importance weight equals p(x), so IWAE-k is log p(x) for any k and chunking."""
    model = PPCA(DataSpec("ppca", (D_OBS,), None, (-10.0, 10.0), 1, 1, "-"))
    x = ppca_data(model).test[:16].double()
    W, b = model.W.detach().double(), model.b.detach().double()
    cov = torch.linalg.inv(W.T @ W / SIGMA**2 + torch.eye(D_LAT, dtype=torch.float64))
    posterior = torch.distributions.MultivariateNormal((cov @ W.T @ (x - b).T / SIGMA**2).T, cov)
    prior = torch.distributions.MultivariateNormal(torch.zeros(D_LAT, dtype=torch.float64), torch.eye(D_LAT).double())
    gen, chol = torch.Generator().manual_seed(3), torch.linalg.cholesky(cov)

    def log_weights(n: int) -> torch.Tensor:
        z = posterior.mean + torch.randn(n, *posterior.mean.shape, generator=gen, dtype=torch.float64) @ chol.T
        obs = torch.distributions.Normal(z @ W.T + b, SIGMA).log_prob(x).sum(-1)  # (n, B)
        return obs + prior.log_prob(z) - posterior.log_prob(z)

    for k, chunk in [(1, 1), (7, 3), (100, 32)]:
        torch.testing.assert_close(lk.chunked_logmeanexp(log_weights, k, chunk), model.exact_log_prob(x))


def test_vae_bound_draws_its_noise_from_the_evaluation_generator() -> None:
    from models.vae import VAE

    data = image_data(8)
    vae = VAE(data.spec, latent_dim=3, width=4)
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)  # the global RNG must not matter
        metrics = lk.evaluate(EvalContext(vae, data, eval_cfg(iwae_k=[16], seed=5)))
        runs.append([m.value for m in metrics])
    assert runs[0] == runs[1] and len(runs[0]) == 4  # ELBO and IWAE-16, nats and bits/dim
    other = lk.evaluate(EvalContext(vae, data, eval_cfg(iwae_k=[16], seed=6)))
    assert [m.value for m in other] != runs[0]


def test_decoder_scale_keeps_each_point_inside_its_level_bin() -> None:
    x = torch.randint(0, 17, (50, 1, 8, 8), generator=torch.Generator().manual_seed(1)).float() / 16
    y, log_jacobian = decoder_scale_inputs(x, 17)
    assert torch.equal(torch.round(y * 16).clamp(0, 16), x * 16)  # rounds back to its level
    assert float((y - x).abs().max()) <= 0.5 / 16  # within half a bin of the level's value k / (L - 1)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(DEQUANTIZE_SEED))
    torch.testing.assert_close(y, x + (u - 0.5) / 16)  # one fixed dequantization
    assert log_jacobian == pytest.approx(64 * math.log(17 / 16))
    assert decoder_scale_inputs(x, None) == (x, 0.0)


def test_ais_metric_records_its_protocol_and_a_bdmc_bracket_on_simulated_data() -> None:
    model = PPCA(DataSpec("ppca", (D_OBS,), None, (-10.0, 10.0), 1, 1, "-"))
    data = ppca_data(model)
    cfg = eval_cfg(ais=ais_cfg(steps=100, n_test=8, batch_size=10, bdmc_n=6))
    m = ais_nll(lk.ais_metrics(model, data, cfg.likelihood, torch.Generator().manual_seed(4)))
    assert m.n == 8 and m.extra["bdmc_n"] == 6 and m.extra["bdmc_lower"] < m.extra["bdmc_upper"]
    assert m.extra["bdmc_gap_nats"] == pytest.approx(m.extra["bdmc_upper"] - m.extra["bdmc_lower"])
    assert m.extra["bdmc_gap_stderr"] > 0
    for key in ("schedule", "steps", "chains", "leapfrog", "pilot_chains", "final_step_size_mean", "accept_rate"):
        assert key in m.extra, key
    assert (m.extra["steps"], m.extra["chains"], m.extra["leapfrog"]) == (100, 8, 1)
    assert 0 < m.extra["final_step_size_min"] <= m.extra["final_step_size_max"]


# ----------------------------------------------------------------------------- Parzen window and KL to truth


class GaussSampler(GenerativeModel):
    """Samples N(0, scale^2 I) and declares no likelihood (like a GAN): only sample-based estimates apply."""

    likelihood = "none"

    def __init__(self, spec: DataSpec, scale: float = 1.0) -> None:
        super().__init__(spec)
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.scale = scale

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        return self.scale * torch.randn(n, *self.spec.shape, generator=generator)


def test_parzen_single_kernel_is_the_gaussian_density() -> None:
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(5))
    center = torch.tensor([[0.5, -1.0, 2.0]])
    want = torch.distributions.MultivariateNormal(center[0].double(), 0.3**2 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(parzen.parzen_log_density(x, center, 0.3, batch=3), want.log_prob(x.double()))


def test_parzen_on_gaussian_data_lands_near_the_true_log_likelihood() -> None:
    spec = DataSpec("gauss2d", (2,), None, (-5.0, 5.0), 400, 500, "test")
    gen = torch.Generator().manual_seed(6)
    data = split_validation(Dataset(spec, torch.randn(800, 2, generator=gen), torch.randn(500, 2, generator=gen)), 0.5)
    parzen = {"enabled": True, "n_samples": 4000, "n_valid": 400, "bandwidth_grid": [0.02, 0.1, 0.2, 0.3, 0.5, 2.0]}
    metrics = lk.evaluate(EvalContext(GaussSampler(spec), data, eval_cfg(parzen=parzen)))
    (m,) = metrics
    truth = float(0.5 * (data.test.double() ** 2).sum(1).mean() + math.log(2 * math.pi))
    assert (m.name, m.kind, m.extra["method"]) == ("nll_nats", "estimate", "parzen")
    assert "Theis et al. 2016" in m.extra["warning"]
    assert m.extra["bandwidth"] in (0.1, 0.2, 0.3, 0.5)  # not an edge of the grid
    assert m.extra["bandwidth_at_grid_edge"] is False
    assert abs(m.value - truth) < 0.1  # a 2-D KDE with 4000 points is close to the truth


def toy_mixture_data(n: int = 1000) -> Dataset:
    density = ToyMixture("ring8")
    gen = torch.Generator().manual_seed(8)
    spec = DataSpec("toy2d", (2,), None, (-3.0, 3.0), n, n, "test")
    return split_validation(Dataset(spec, density.sample(n, gen), density.sample(n, gen), density=density), 0.2)


class WideGauss(ExactGauss):
    """Exact density N(0, 2^2 I) in 2-D."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (x**2).sum(1) / 4 - math.log(2 * math.pi * 4)


def test_kl_to_truth_with_an_exact_density_equals_the_hand_computed_mean() -> None:
    data = toy_mixture_data()
    metrics = lk.evaluate(EvalContext(WideGauss(data.spec), data, eval_cfg(kl_to_truth={"enabled": True})))
    (kl,) = [m for m in metrics if m.name == "kl_to_truth"]  # an exact density needs no floor
    x = data.test.double()
    diff = data.density.log_density(x) - (-0.5 * (x**2).sum(1) / 4 - math.log(8 * math.pi))
    assert kl.value == pytest.approx(float(diff.mean())) and kl.value > 0
    assert kl.stderr == pytest.approx(float(diff.std() / math.sqrt(len(diff))))
    assert (kl.kind, kl.unit, kl.extra["method"], kl.extra["density_kind"]) == ("estimate", "nats", "exact", "exact")


def test_kl_to_truth_of_a_bound_model_reuses_its_test_iwae_instead_of_drawing_another() -> None:
    """The KL and the test NLL of a VAE come from one IWAE-k pass over the test rows: KL = mean log p_true + NLL
    exactly (two independent IWAE draws would differ), and the long bound is evaluated once per batch."""
    from models.vae import VAE

    data = toy_mixture_data(400)
    vae = VAE(data.spec, latent_dim=2, width=4)
    calls: list[int] = []
    bound = vae.log_prob_bound

    def counted(x: torch.Tensor, k: int = 1, **kwargs: object) -> torch.Tensor:
        calls.append(k)
        return bound(x, k, **kwargs)

    vae.log_prob_bound = counted  # type: ignore[method-assign]
    cfg = eval_cfg(batch_size=100, iwae_k=[32], kl_to_truth={"enabled": True})
    metrics = lk.evaluate(EvalContext(vae, data, cfg))
    (kl,) = [m for m in metrics if m.name == "kl_to_truth"]
    (nll,) = [m for m in metrics if m.name == "nll_nats" and m.extra["method"] == "iwae-32"]
    true_mean = float(data.density.log_density(data.test).double().mean())
    assert kl.value == pytest.approx(true_mean + nll.value, abs=1e-9)
    assert (kl.extra["method"], kl.extra["density_kind"]) == ("iwae-32", "lower_bound")
    assert calls.count(32) == 4  # 400 test rows in batches of 100, once


def test_kl_to_truth_from_samples_is_small_for_a_perfect_sampler() -> None:
    data = toy_mixture_data()

    class MixtureSampler(GaussSampler):
        def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
            return data.density.sample(n, generator)

    kl_cfg = {"enabled": True, "n_samples": 4000, "n_valid": 500, "bandwidth_grid": [0.01, 0.03, 0.05, 0.1, 0.3]}
    metrics = lk.evaluate(EvalContext(MixtureSampler(data.spec), data, eval_cfg(kl_to_truth=kl_cfg)))
    kl, floor = metrics
    assert (kl.extra["method"], kl.extra["density_kind"], kl.extra["source"]) == ("kde", "estimate", "model")
    assert -3 * kl.stderr < kl.value < 0.15
    # The floor: the same KDE on training rows (draws of the truth); a perfect sampler scores about the same.
    assert (floor.name, floor.extra["source"], floor.extra["centres_from"]) == ("kl_to_truth", "data", "train")
    assert floor.extra["n_samples"] == min(4000, len(data.train)) and floor.n == kl.n
    assert -3 * floor.stderr < floor.value < 0.15 and abs(kl.value - floor.value) < 0.1
    # The same estimator sees a model that ignores the ring: a large KL, beside the same floor (it is the data's).
    wide = lk.evaluate(EvalContext(GaussSampler(data.spec, scale=2.0), data, eval_cfg(kl_to_truth=kl_cfg)))
    assert wide[0].value > 1.0 and wide[1].value == floor.value


# ----------------------------------------------------------------------------- the image path end to end


class TinyImageDecoder(GenerativeModel):
    """A GAN-like decoder on 8x8 images: sigmoid of a linear map of z; no likelihood of its own."""

    likelihood = "none"

    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)
        self.net = torch.nn.Linear(3, spec.dim)
        self.latent_dim = 3

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(z)).view(-1, *self.spec.shape)  # (N, C, H, W)

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        return self.decode(torch.randn(n, 3, generator=generator))


def test_image_decoder_gets_ais_and_parzen_in_bits_per_dim_on_dequantized_data() -> None:
    data = image_data()
    model = TinyImageDecoder(data.spec)
    cfg = eval_cfg(
        ais=ais_cfg(steps=5, chains=2, n_test=4, batch_size=4, select_n=4, select_steps=2, bdmc_n=2),
        parzen={"enabled": True, "n_samples": 50, "n_valid": 10, "bandwidth_grid": [0.1, 0.3]},
    )
    metrics = lk.evaluate(EvalContext(model, data, cfg))
    names = [(m.name, m.extra["method"]) for m in metrics]
    assert names == [("nll_nats", "ais"), ("nll_bpd", "ais"), ("nll_nats", "parzen"), ("nll_bpd", "parzen")]
    ais_nats, ais_bpd = metrics[0], metrics[1]
    # about the discrete data, scored on dequantized points on the decoder's scale (Jensen makes it a bound there)
    assert ais_nats.extra["data"] == "discrete" and ais_nats.extra["dequantized"] is True
    assert ais_nats.extra["scale"] == "decoder" and all(m.extra["dequantized"] for m in metrics[2:])  # Parzen too
    assert ais_nats.extra["obs_sigma"] in (0.1, 0.3, 1.0) and ais_nats.extra["obs_sigma_split"] == "valid"
    assert ais_nats.extra["log_jacobian"] == pytest.approx(64 * math.log(17 / 16))
    assert ais_bpd.value == pytest.approx(float(lk.bits_per_dim(torch.tensor(-ais_nats.value).double(), 64, 17)))
    assert ais_nats.extra["bdmc_n"] == 2 and math.isfinite(ais_nats.extra["bdmc_gap_nats"])
    assert all(p.requires_grad for p in model.parameters())  # AIS froze them only while it ran


def test_selections_are_made_on_validation_rows_never_on_training_rows() -> None:
    """The Parzen bandwidth is chosen on the validation split: changing training rows changes nothing, changing
    validation rows changes the scores; with no validation split the selection is refused."""
    spec = DataSpec("gauss2d", (2,), None, (-5.0, 5.0), 400, 300, "test")
    gen = torch.Generator().manual_seed(6)
    data = split_validation(Dataset(spec, torch.randn(600, 2, generator=gen), torch.randn(300, 2, generator=gen)), 0.5)
    parzen = {"enabled": True, "n_samples": 500, "n_valid": 300, "bandwidth_grid": [0.1, 0.3, 1.0]}

    def scores(d: Dataset) -> dict:
        (m,) = lk.evaluate(EvalContext(GaussSampler(spec), d, eval_cfg(parzen=parzen)))
        assert m.extra["bandwidth_split"] == "valid"
        return m.extra["bandwidth_scores"]

    base = scores(data)
    assert scores(replace(data, train=data.train * 50.0)) == base  # training rows play no part
    assert scores(replace(data, valid=data.valid * 3.0)) != base
    with pytest.raises(GenbenchError, match="no validation split"):
        scores(replace(data, valid=None))


def test_observation_floor_is_the_training_images_as_a_gaussian_mixture_generator() -> None:
    spec = DataSpec("digits", (1, 1, 2), 17, (0.0, 1.0), 1, 1, "test")
    data = Dataset(spec, torch.tensor([[[[0.25, 0.5]]]]), torch.zeros(1, 1, 1, 2))
    y = torch.tensor([[0.3, 0.45]])
    got = lk.observation_floor(data, y, 0.1, 0.7, 17)
    normal = torch.distributions.Normal(torch.tensor([0.25, 0.5], dtype=torch.float64), 0.1)
    log_n = normal.log_prob(y.double()).sum()  # one centre: one Gaussian
    assert got["obs_floor_nats"] == pytest.approx(-(float(log_n) + 0.7), rel=1e-9)
    expected_bpd = -(float(log_n) + 0.7 - 2 * math.log(17)) / (2 * math.log(2))
    assert got["obs_floor_bpd"] == pytest.approx(expected_bpd, rel=1e-9)


def test_ais_is_paired_with_the_models_own_bound_on_the_same_examples() -> None:
    data = image_data(6)

    class KnownBound(GenerativeModel):
        likelihood = "lower_bound"

        def __init__(self, spec) -> None:
            super().__init__(spec)
            self.w = torch.nn.Parameter(torch.zeros(()))

        def log_prob_bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
            return -x.flatten(1).sum(1) - 1.0 / k  # tighter with k, a known value per example

    model = KnownBound(data.spec)
    ais_lp = torch.full((4,), -3.0, dtype=torch.float64)
    got = lk.paired_with_own_bound(model, data, ais_lp, eval_cfg(iwae_k=[8]).likelihood, 17, None)
    own = -data.test[:4].flatten(1).sum(1).double() - 1.0 / 8
    assert got["paired_method"] == "iwae-8" and got["paired_n"] == 4
    assert got["paired_gap_nats"] == pytest.approx(float((ais_lp - own).mean()), rel=1e-9)
    exact = KnownBound(data.spec)
    exact.likelihood = "exact"  # only a bound model has a bound to pair with
    assert lk.paired_with_own_bound(exact, data, ais_lp, eval_cfg().likelihood, 17, None) == {}
