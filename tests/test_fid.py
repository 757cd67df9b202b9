"""Fréchet distance against closed forms and pytorch-fid; cached reference statistics; the `evaluate` family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.stats import ortho_group

from genbench.data import DataSpec, load_digits_data, load_toy2d
from genbench.metrics import features as feats
from genbench.metrics import fid
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel


def random_cov(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    a = rng.standard_normal((d, n))
    return a @ a.T / n  # rank min(d, n)


def test_statistics_match_numpy_cov() -> None:
    x = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    mu, sigma = fid.statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)


@pytest.mark.parametrize("n", [200, 30])  # full rank, and singular (30 samples in 64-d)
@pytest.mark.parametrize("device", [None, "cpu"])  # numpy route and torch float64 route
def test_fid_of_a_set_with_itself_is_zero(n: int, device: str | None) -> None:
    x = np.random.default_rng(1).standard_normal((n, 64)) * 3.0 + 1.0
    mu, sigma = fid.statistics(x)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma, device=device)) < 1e-6


@pytest.mark.parametrize("device", [None, "cpu"])
def test_commuting_covariances_closed_form(device: str | None) -> None:
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: tr sqrt(S1 S2) = sum sqrt(a b), so
    # d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2; zeros in a, b make both singular.
    rng = np.random.default_rng(2)
    d = 40
    q = ortho_group.rvs(d, random_state=3)
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    a[:5], b[-5:] = 0.0, 0.0
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fid.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, device=device)
    assert got == pytest.approx(expected, rel=1e-8)
    # equal covariances: only the means differ
    s = q @ np.diag(a) @ q.T
    assert fid.frechet_distance(mu1, s, mu2, s, device=device) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-6)


def check_against_pytorch_fid(d: int, n1: int, n2: int, seed: int, torch_too: bool) -> None:
    rng = np.random.default_rng(seed)
    s1, s2 = random_cov(rng, d, n1), random_cov(rng, d, n2)
    mu1, mu2 = rng.standard_normal(d) * 0.1, rng.standard_normal(d) * 0.1
    expected = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    if torch_too:
        assert fid.frechet_distance(mu1, s1, mu2, s2, device="cpu") == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_agrees_with_pytorch_fid_512() -> None:
    check_against_pytorch_fid(512, 600, 1000, seed=4, torch_too=True)


@pytest.mark.slow  # pytorch-fid's sqrtm at 2048-d: ~12 s on an idle 2-core CPU, over 60 s on a busy one
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_agrees_with_pytorch_fid_2048() -> None:
    check_against_pytorch_fid(2048, 2500, 3000, seed=5, torch_too=False)


def test_singular_covariances_torch_and_numpy_agree() -> None:
    rng = np.random.default_rng(5)
    s1, s2 = random_cov(rng, 128, 40), random_cov(rng, 128, 60)  # both rank-deficient
    mu = np.zeros(128)
    a = fid.frechet_distance(mu, s1, mu, s2)
    assert np.isfinite(a) and a > 0
    assert fid.frechet_distance(mu, s1, mu, s2, device="cpu") == pytest.approx(a, rel=1e-7)
    assert fid.frechet_distance(mu, s2, mu, s1) == pytest.approx(a, rel=1e-7)  # symmetric


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# ----------------------------------------------------------------------------- the reference-statistics cache


def counting_extractor(key: str = "raw-test") -> feats.FeatureExtractor:
    ext = feats.raw_extractor()
    ext.key = key
    inner, ext.calls = ext.fn, 0

    def fn(x: torch.Tensor) -> torch.Tensor:
        ext.calls += 1
        return inner(x)

    ext.fn = fn
    return ext


def test_reference_statistics_cached_and_recomputed(tmp_path) -> None:
    x = torch.randn(100, 3)
    ext = counting_extractor()
    first = fid.reference_statistics(x, ext, "toy-test-raw", batch_size=32, cache_dir=str(tmp_path))
    assert ext.calls == 4  # 100 rows in batches of 32
    np.testing.assert_allclose(first.sigma, np.cov(x.double().numpy(), rowvar=False), rtol=1e-6)
    again = fid.reference_statistics(x, ext, "toy-test-raw", batch_size=32, cache_dir=str(tmp_path))
    assert ext.calls == 4  # reused: the feature function was not called again
    np.testing.assert_array_equal(again.sigma, first.sigma)
    np.testing.assert_array_equal(again.features, first.features)
    changed = x.clone()
    changed[0, 0] += 1.0
    fid.reference_statistics(changed, ext, "toy-test-raw", batch_size=32, cache_dir=str(tmp_path))
    assert ext.calls == 8  # other data: recomputed
    other = counting_extractor(key="other-features")
    fid.reference_statistics(x, other, "toy-test-raw", batch_size=32, cache_dir=str(tmp_path))
    assert other.calls == 4  # other features: recomputed
    assert len(list((tmp_path / "fid_stats").glob("*.npz"))) == 3


# ----------------------------------------------------------------------------- the metric family


class FixedSampler(GenerativeModel):
    """A stand-in model whose samples are rows of a given pool (in order, cycling)."""

    def __init__(self, spec: DataSpec, pool: torch.Tensor) -> None:
        super().__init__(spec)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.pool, self.next = pool, 0

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        idx = (self.next + torch.arange(n)) % len(self.pool)
        self.next += n
        return self.pool[idx]


def fid_cfg(tmp_path, features: str = "auto", **overrides) -> OmegaConf:
    """An eval config with the `fid` section (no real-data floor unless asked) and its `features` section."""
    section = {"enabled": True, "n_gen": 400, "n_ref": None, "real_data_floor": False}
    section |= {"kid_subsets": 5, "kid_subset_size": 100, "pr_k": 3, "pr_chunk": 64}
    features = {"name": features, "batch_size": 128, "cache_dir": str(tmp_path), "domain": {"max_steps": 40}}
    return OmegaConf.create({"seed": 0, "fid": section | overrides, "features": features})


def test_evaluate_toy2d_raw_names_units_and_values(tmp_path) -> None:
    data = load_toy2d("ring8", n_train=100, n_test=500)
    good = FixedSampler(data.spec, data.density.sample(400, torch.Generator().manual_seed(9)))
    collapsed = FixedSampler(data.spec, data.density.centers[:1].float() + 0.1 * torch.randn(400, 2))
    m_good = {m.name: m for m in fid.evaluate(EvalContext(good, data, fid_cfg(tmp_path)))}
    m_bad = {m.name: m for m in fid.evaluate(EvalContext(collapsed, data, fid_cfg(tmp_path)))}
    assert list(m_good) == ["fid", "kid", "precision", "recall"]
    for m in m_good.values():
        assert m.kind == "estimate" and m.split == "test" and m.extra["features"] == "raw"
        assert m.to_dict()["variant"] == {"features": "raw", "mode": "default", "source": "model"}
        assert m.unit == ("fraction" if m.name in ("precision", "recall") else "–")
    assert m_good["fid"].extra["n_gen"] == 400 and m_good["fid"].extra["n_ref"] == 500
    assert m_good["precision"].extra["k"] == 3 and m_good["precision"].extra["n_ref"] == 400
    # the pipeline's numbers agree with the pure cores on the same features
    ref = data.test.double().numpy()
    gen = good.pool.double().numpy()
    expected = fid.frechet_distance(*fid.statistics(gen), *fid.statistics(ref))
    assert m_good["fid"].value == pytest.approx(expected, rel=1e-5)
    assert m_good["fid"].value < 0.1 < m_bad["fid"].value
    assert m_bad["recall"].value < 0.3 < 0.8 < m_good["recall"].value
    assert m_good["kid"].value < m_bad["kid"].value


def test_evaluate_disabled_returns_nothing(tmp_path) -> None:
    data = load_toy2d("ring8", n_train=10, n_test=10)
    assert fid.evaluate(EvalContext(FixedSampler(data.spec, data.test), data, fid_cfg(tmp_path, enabled=False))) == []


def test_evaluate_digits_domain_features_records_accuracy(tmp_path) -> None:
    data = load_digits_data()
    model = FixedSampler(data.spec, data.train[:300])
    metrics = fid.evaluate(EvalContext(model, data, fid_cfg(tmp_path, n_gen=300)))
    for m in metrics:
        assert m.extra["features"] == "domain"
        assert 0.5 < m.extra["classifier_accuracy"] <= 1.0  # 40 steps already beat chance (0.1) by far
    assert metrics[0].extra["n_ref"] == data.spec.n_test


def test_evaluate_inception_path_with_stand_in_net(tmp_path, monkeypatch) -> None:
    data = load_digits_data()
    stand_in = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=8), torch.nn.ReLU())
    monkeypatch.setattr(feats, "inception_weights_file", lambda path, download: tmp_path / "w.pth")
    monkeypatch.setattr(feats, "load_fid_inception", lambda file: ListOutput(stand_in))
    model = FixedSampler(data.spec, data.train[:64])
    metrics = fid.evaluate(EvalContext(model, data, fid_cfg(tmp_path, features="inception", n_gen=64, n_ref=64)))
    assert [m.extra["features"] for m in metrics] == ["inception"] * 4
    assert np.isfinite(metrics[0].value) and metrics[0].value > 0


class ListOutput(torch.nn.Module):
    """Wraps a network so it returns a list of feature maps, as pytorch-fid's InceptionV3 does."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net(x)]


def test_n_gen_capped_on_cpu(tmp_path) -> None:
    data = load_toy2d("ring8", n_train=10, n_test=300)
    model = FixedSampler(data.spec, data.test)
    metrics = fid.evaluate(EvalContext(model, data, fid_cfg(tmp_path, n_gen=400, n_gen_cpu=250)))
    assert metrics[0].extra["n_gen"] == metrics[0].n == 250
    assert metrics[1].extra["subset_size"] == 100 and metrics[2].extra["n_ref"] == 250
