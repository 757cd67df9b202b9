"""Cached reference statistics and the `evaluate` family (the Fréchet maths: tests/test_frechet.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from genbench.data import DataSpec, load_digits_data, load_toy2d
from genbench.metrics import features as feats
from genbench.metrics import fid, frechet
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel

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
    expected = frechet.frechet_distance(*frechet.statistics(gen), *frechet.statistics(ref))
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
