"""Likelihood baselines (genbench/metrics/baselines.py) against hand computations, and their rows in the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import multivariate_normal

from genbench.data import dequantize
from genbench.datasets import load_dataset
from genbench.metrics import baselines
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel


class Stub(GenerativeModel):
    def __init__(self, spec, variant: str = "discrete") -> None:
        super().__init__(spec)
        self.data_variant = variant  # an instance attribute is enough for the family to read
        self.w = torch.nn.Parameter(torch.zeros(()))


def run(data, variant: str = "discrete") -> dict[tuple[str, str, str], dict]:
    ctx = EvalContext(Stub(data.spec, variant), data, OmegaConf.create({"seed": 0}))
    return {(m.name, m.extra["method"], m.extra["data"]): m for m in baselines.evaluate(ctx)}


def test_digits_baselines_against_hand_computation() -> None:
    data = load_dataset("digits")
    got = run(data)
    assert got[("nll_bpd", "uniform", "discrete")].value == pytest.approx(math.log2(17), abs=1e-12)
    # independent categorical: add-one smoothed frequencies per pixel, by brute force
    k_train = torch.round(data.train.flatten(1) * 16).long().numpy()
    k_test = torch.round(data.test.flatten(1) * 16).long().numpy()
    bits = 0.0
    for d in range(64):
        counts = np.bincount(k_train[:, d], minlength=17) + 1.0
        bits -= np.log2(counts[k_test[:, d]] / counts.sum()).sum()
    cat = got[("nll_bpd", "independent categorical", "discrete")]
    assert cat.value == pytest.approx(bits / (64 * len(k_test)), rel=1e-10) and cat.kind == "exact"
    assert cat.value < math.log2(17)  # pixels are far from uniform
    gauss = got[("nll_bpd", "gaussian", "discrete")]
    assert gauss.kind == "lower_bound" and gauss.extra["dequantized"] is True  # a dequantized density bounds
    gen = torch.Generator().manual_seed(baselines.DEQUANTIZE_SEED)
    y_train, y_test = (dequantize(x.flatten(1), 17, gen).double().numpy() for x in (data.train, data.test))
    cov = np.cov(y_train, rowvar=False, bias=True) + baselines.RIDGE * np.eye(64)
    nats = -multivariate_normal(y_train.mean(0), cov).logpdf(y_test).mean()
    assert gauss.value == pytest.approx((nats + 64 * math.log(17)) / (64 * math.log(2)), rel=1e-8)
    assert all(m.extra["source"] == "baseline" for m in got.values())
    assert all(m.to_dict()["variant"]["source"] == "baseline" for m in got.values())
    assert not [k for k in got if k[2] == "binarized"]  # no binarized model, no binarized baselines


def test_binarized_baselines_only_where_a_model_is_scored_on_binarized_data() -> None:
    got = run(load_dataset("digits"), variant="binarized")
    assert got[("nll_bpd", "uniform", "binarized")].value == pytest.approx(1.0, abs=1e-12)
    assert 0 < got[("nll_bpd", "bernoulli", "binarized")].value < 1.0


def test_toy_gaussian_baseline_matches_scipy() -> None:
    data = load_dataset("toy2d", n_train=2000, n_test=500)
    (m,) = run(data).values()
    x, y = data.train.double().numpy(), data.test.double().numpy()
    want = -multivariate_normal(x.mean(0), np.cov(x, rowvar=False, bias=True)).logpdf(y).mean()
    assert (m.name, m.extra["method"]) == ("nll_nats", "gaussian") and m.value == pytest.approx(want, rel=1e-6)
