"""Mode coverage on the toy mixtures (genbench/metrics/mixture.py) and quality over training (progress.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from genbench.data import ToyMixture
from genbench.metrics.mixture import coverage, coverage_metrics
from genbench.pipeline import bench
from genbench.train import snapshots


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_true_samples_cover_every_mode_with_the_gaussian_share_inside_3_sigma(name: str) -> None:
    mix = ToyMixture(name)
    points = mix.sample(20_000, torch.Generator().manual_seed(0))
    modes, quality = coverage(points, mix.centers, mix.sigma, 20)
    assert modes == len(mix.centers)
    assert quality == pytest.approx(1 - math.exp(-4.5), abs=0.005)  # P(|x| < 3 sigma) of a 2-D Gaussian


def test_collapse_and_blur_are_told_apart() -> None:
    mix = ToyMixture("ring8")
    gen = torch.Generator().manual_seed(1)
    collapsed = mix.centers[:1].float() + mix.sigma * torch.randn(2500, 2, generator=gen)
    blurred = 2.0 * torch.randn(2500, 2, generator=gen)
    assert coverage(collapsed, mix.centers, mix.sigma, 20) == (1, pytest.approx(0.989, abs=0.01))
    found = {m.name: m for m in coverage_metrics(collapsed, mix, 20, {})}
    assert found["modes_covered"].value == 1 and found["modes_covered"].extra["covered"] == [0]  # which one
    modes, quality = coverage(blurred, mix.centers, mix.sigma, 20)
    assert quality < 0.1 and modes < 8  # a blur reaches few modes often enough and few samples are good


def test_progress_scores_every_kept_snapshot_and_keeps_the_final_weights(compose, tmp_path: Path) -> None:
    overrides = ["model=gan", "dataset=toy2d", "eval=fast", "train.max_steps=4", "train.checkpoint_every=2"]
    record = bench(compose([*overrides, "train.keep_snapshots=true"]))
    assert [s for s, _ in snapshots(tmp_path / "run")] == [2, 4]
    steps = sorted(m["step"] for m in record["metrics"] if m["name"] == "modes_covered_over_training")
    assert steps == [2, 4]
    kl = [m for m in record["metrics"] if m["name"] == "kl_to_truth_over_training"]
    assert sorted(m["step"] for m in kl) == [2, 4] and all(m["variant"]["step"] == m["step"] for m in kl)
    # the last snapshot is the final model: the same samples, the same coverage as the final metric
    final = next(m for m in record["metrics"] if m["name"] == "modes_covered")
    last = next(m for m in record["metrics"] if m["name"] == "modes_covered_over_training" and m["step"] == 4)
    assert final["value"] == last["value"] and final["covered"] == last["covered"]
    assert len(final["covered"]) == final["value"]
    plain = bench(compose(overrides, out_dir=tmp_path / "plain"))  # without snapshots: no progress metrics
    assert not [m for m in plain["metrics"] if m["name"].endswith("_over_training")]


def load_benchmark(name: str) -> object:
    """A script under benchmarks/ (not a package) as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_literature_scores_of_true_draws_and_of_a_collapse(name: str) -> None:
    """benchmarks/toy_vs_literature.py: true draws of the narrow mixture cover every mode evenly (reverse KL of the
    mode histogram ~ 0); draws around one centre cover one mode, and the reverse KL is log K (all mass on 1 of K)."""
    bench_module = load_benchmark("toy_vs_literature")
    mix = bench_module.literature_mixture(name)
    assert mix.sigma < ToyMixture(name).sigma and torch.equal(mix.centers, ToyMixture(name).centers)
    truth = bench_module.mode_scores(mix.sample(20_000, torch.Generator().manual_seed(0)), mix)
    assert truth["modes"] == truth["modes_any"] == len(mix.centers)
    assert truth["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)
    assert 0 <= truth["reverse_kl"] < 0.01
    one = mix.centers[:1].float() + mix.sigma * torch.randn(2500, 2, generator=torch.Generator().manual_seed(1))
    collapsed = bench_module.mode_scores(one, mix)
    assert collapsed["modes"] == collapsed["modes_any"] == 1
    assert collapsed["reverse_kl"] == pytest.approx(math.log(len(mix.centers)))
