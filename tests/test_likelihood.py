"""Tests of genbench/metrics/likelihood.py against closed forms and brute force."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from genbench.data import Dataset, DataSpec, binarize
from genbench.metrics import likelihood as lk
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

    likelihood = "bound"
    data_preprocessing = "binarized"

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
    x = torch.randint(0, 17, (2 * n, 1, 8, 8), generator=gen).float() / 16
    return Dataset(spec, x[:n], x[n:])


def eval_cfg(**overrides: object) -> object:
    base = {"enabled": True, "n_test": None, "batch_size": 16, "iwae_k": [4, 8], "chunk": 4}
    return OmegaConf.create({"likelihood": {**base, **overrides}})


def test_exact_model_gets_nats_mean_and_stderr_and_no_bpd_on_toy_data() -> None:
    data = toy_data()
    metrics = lk.evaluate(ExactGauss(data.spec), data, eval_cfg(), torch.Generator().manual_seed(0))
    assert [m.name for m in metrics] == ["nll_nats"]
    nll = 0.5 * (data.test.double() ** 2).sum(1) + math.log(2 * math.pi)
    m = metrics[0]
    assert m.value == pytest.approx(float(nll.mean()))
    assert m.stderr == pytest.approx(float(nll.std() / math.sqrt(len(nll))))
    assert (m.kind, m.n, m.split, m.extra["method"]) == ("exact", 50, "test", "exact")


def test_bound_model_on_binarized_images_gets_elbo_and_each_iwae_k_with_l2() -> None:
    data = image_data()
    model = BernoulliHalf(data.spec)
    metrics = lk.evaluate(model, data, eval_cfg(n_test=10), None)
    methods = [(m.name, m.extra["method"]) for m in metrics]
    assert methods == [(n, meth) for meth in ("elbo", "iwae-4", "iwae-8") for n in ("nll_nats", "nll_bpd")]
    for m in metrics:
        assert m.kind == "lower_bound" and m.n == 10 and m.extra["data"] == "binarized"
        if m.name == "nll_bpd":
            assert m.value == pytest.approx(1.0)  # L = 2 for binarized data, not the dataset's 17
    # The same fixed binarization for every call: binary values, reproducible.
    assert torch.equal(model.seen[0], model.seen[-1])
    assert set(model.seen[0].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(model.seen[0], binarize(data.test[:10], torch.Generator().manual_seed(lk.BINARIZE_SEED)))


def test_disabled_and_no_likelihood_give_nothing() -> None:
    data = toy_data()
    assert lk.evaluate(ExactGauss(data.spec), data, eval_cfg(enabled=False), None) == []

    class NoDensity(ExactGauss):
        likelihood = "none"

    assert lk.evaluate(NoDensity(data.spec), data, eval_cfg(), None) == []
