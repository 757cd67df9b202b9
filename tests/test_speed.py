"""Tests of the sampling-speed harness (genbench/metrics/speed.py) on tiny CPU models; no timing thresholds."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from genbench.data import DataSpec
from genbench.metrics import speed
from genbench.model import GenerativeModel, randn

SPEC = DataSpec("tiny", (1, 4, 4), 256, (0.0, 1.0), 8, 8, "synthetic")


class TinyLinear(GenerativeModel):
    """A one-layer 'generator' z -> sigmoid(W z + b), with two sampling modes that differ in work done."""

    sampling_modes = ("fast", "slow")

    def __init__(self, spec: DataSpec, latent_dim: int = 8) -> None:
        super().__init__(spec)
        self.latent_dim = latent_dim
        self.net = nn.Linear(latent_dim, spec.dim)

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        mode = self.check_mode(mode)
        z = randn((n, self.latent_dim), generator, self.device)
        x = self.net(z)  # (n, D)
        if mode == "slow":  # a second pass, so the two modes have different FLOP counts
            x = self.net(z) + x
        return torch.sigmoid(x).view(n, *self.spec.shape)  # (n, C, H, W)


def test_evaluate_times_every_mode_with_every_field() -> None:
    cfg = OmegaConf.create({"speed": {"enabled": True, "n": 4, "repeats": 3, "warmup": 1}})
    metrics = speed.evaluate(TinyLinear(SPEC), None, cfg, torch.Generator().manual_seed(0))
    assert [(m.name, m.extra["mode"]) for m in metrics] == [
        ("sample_throughput", "fast"),
        ("sample_latency", "fast"),
        ("sample_throughput", "slow"),
        ("sample_latency", "slow"),
    ]
    for m in metrics:
        assert m.kind == "measured" and m.n == 3
        for key in ("device", "batch_size", "dtype", "mode", "torch", "threads", "first_call_s"):
            assert key in m.extra, key
        assert m.extra["batch_size"] == 4 and m.extra["dtype"] == "fp32"
    thr, lat = metrics[0], metrics[1]
    assert thr.unit == "samples/s" and lat.unit == "s"
    assert thr.value == pytest.approx(4 / lat.value)
    assert lat.extra["min_s"] <= lat.value <= lat.extra["max_s"]


def test_evaluate_disabled_returns_nothing() -> None:
    cfg = OmegaConf.create({"speed": {"enabled": False, "n": 4, "repeats": 3, "warmup": 1}})
    assert speed.evaluate(TinyLinear(SPEC), None, cfg, torch.Generator()) == []


def test_time_calls_counts_calls_and_respects_budget() -> None:
    calls = []
    timing = speed.time_calls(lambda: calls.append(1), torch.device("cpu"), repeats=5, warmup=2)
    assert len(calls) == 1 + 2 + 5 and len(timing.times_s) == 5
    calls.clear()
    # a spent budget stops after the minimum number of timed repeats
    timing = speed.time_calls(lambda: calls.append(1), torch.device("cpu"), 10, 0, budget_s=-1.0, min_repeats=2)
    assert len(timing.times_s) == 2 and len(calls) == 3
