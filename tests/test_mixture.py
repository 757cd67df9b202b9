"""Mode coverage on the toy mixtures (genbench/metrics/mixture.py) and quality over training (progress.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from genbench.data import ToyMixture
from genbench.metrics.mixture import coverage
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
    assert final["value"] == last["value"]
    plain = bench(compose(overrides, out_dir=tmp_path / "plain"))  # without snapshots: no progress metrics
    assert not [m for m in plain["metrics"] if m["name"].endswith("_over_training")]
