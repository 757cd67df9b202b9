"""The evaluation context (genbench/metrics/context.py) and the metric registry (genbench/metrics/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

from genbench import metrics
from genbench.data import load_toy2d
from genbench.metrics import Column, Family
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel, randn
from genbench.pipeline import bench
from genbench.report.cells import fmt
from genbench.report.records import group_runs, load_runs
from genbench.report.tables import main_table
from genbench.results import find_metric


class CountingSampler(GenerativeModel):
    """Gaussian toy samples; counts every sample() call per mode."""

    sampling_modes = ("default", "wide")
    mode_changes_samples = True

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls: dict[str, int] = {}

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        mode = self.check_mode(mode)
        self.calls[mode] = self.calls.get(mode, 0) + 1
        width = 1.0 if mode == "default" else 3.0
        return width * self.scale.detach() * randn((n, 2), generator, self.device)


def context(model: GenerativeModel, **cfg: object) -> EvalContext:
    data = load_toy2d("ring8", n_train=50, n_test=50)
    return EvalContext(model, data, OmegaConf.create({"seed": 7, "sample_batch": 16, **cfg}))


def test_samples_are_drawn_once_and_do_not_depend_on_the_order_of_requests() -> None:
    a = context(CountingSampler(load_toy2d("ring8", 10, 10).spec))
    first = a.samples(20)
    assert a.model.calls == {"default": 2}  # two chunks of 16
    again = a.samples(10)
    assert a.model.calls == {"default": 2} and torch.equal(again, first[:10])
    more = a.samples(40)  # the pool grows by whole chunks, keeping what it had
    assert a.model.calls == {"default": 3} and torch.equal(more[:20], first)
    b = context(CountingSampler(load_toy2d("ring8", 10, 10).spec))
    assert torch.equal(b.samples(40), more)  # one request or three: the same samples
    wide = b.samples(16, "wide")
    assert not torch.equal(wide, more[:16]) and b.model.calls["wide"] == 1
    assert b.modes() == ["default", "wide"]


def test_generators_are_per_purpose_and_reproducible() -> None:
    ctx = context(CountingSampler(load_toy2d("ring8", 10, 10).spec))
    draw: Callable[[str], torch.Tensor] = lambda purpose: torch.rand(3, generator=ctx.generator(purpose))  # noqa: E731
    assert torch.equal(draw("ais"), draw("ais"))
    assert not torch.equal(draw("ais"), draw("likelihood"))


def test_features_of_a_pool_are_computed_once() -> None:
    ctx = context(CountingSampler(load_toy2d("ring8", 10, 10).spec), features={"name": "raw"})
    calls = []
    extractor = ctx.extractor()
    inner = extractor.fn
    extractor.fn = lambda x: calls.append(len(x)) or inner(x)
    f1 = ctx.sample_features(20)
    f2 = ctx.sample_features(20)
    assert f1 is not None and (f2 == f1).all() and sum(calls) == 20
    ctx.sample_features(30)
    assert sum(calls) == 30  # only the 10 new rows
    assert (ctx.sample_features(30)[:20] == f1).all()


def test_a_new_metric_family_is_one_file_and_one_registration(compose, monkeypatch, tmp_path: Path) -> None:
    family = Family("brightness", "dummy_metric", (Column("brightness_gap", "brightness gap", "quality"),))
    monkeypatch.setattr(metrics, "FAMILIES", (*metrics.FAMILIES, family))
    record = bench(compose(["model=gsn", "dataset=toy2d", "train.max_steps=2", "eval=fast", "eval.fid.enabled=false"]))
    gaps = [m for m in record["metrics"] if m["name"] == "brightness_gap"]
    assert sorted(m["mode"] for m in gaps) == sorted(record["model_info"]["sampling_modes"])
    assert find_metric(record, "brightness_gap", mode="default")["variant"] == {"mode": "default"}
    header, rows = main_table(group_runs(load_runs(tmp_path / "run").runs)["toy2d"])
    assert "brightness gap" in header
    cell = dict(zip(header, rows[0], strict=True))["brightness gap"]
    assert cell == fmt(find_metric(record, "brightness_gap", mode="default")["value"])  # the default mode's
