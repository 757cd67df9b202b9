"""Tests for models/pixelcnn.py: causal masks, exact normalisation, naive == cached sampling, training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from models.pixelcnn import PixelCNN


def image_spec(shape: tuple[int, int, int], levels: int) -> DataSpec:
    return DataSpec("tiny", shape, levels, (0.0, 1.0), 16, 16, "synthetic", num_classes=3)


def tiny(shape: tuple[int, int, int], levels: int = 5, **kwargs) -> PixelCNN:
    torch.manual_seed(0)
    kw = {"channels": 12, "n_layers": 3, "kernel": 3, "first_kernel": 3, "head_channels": 12} | kwargs
    return PixelCNN(image_spec(shape, levels), **kw)


def test_toy2d_is_refused_with_the_accepted_kinds() -> None:
    spec = DataSpec("toy2d", (2,), None, (-3.0, 3.0), 10, 10, "toy")
    with pytest.raises(GenbenchError, match=r"toy2d.*accepted: digits"):
        PixelCNN(spec)


@pytest.mark.parametrize("colours", [1, 3])
def test_masks_are_causal_without_blind_spot(colours: int) -> None:
    """d output_i / d input_j is exactly 0 for j >= i (raster, then colour order); the pixel up-right is seen."""
    C, H, W = colours, 4, 4
    model = tiny((C, H, W), first_kernel=5, channels=24, head_channels=24).double()
    # A few examples, so that a ReLU that happens to be off for one input cannot hide a dependency.
    x = (torch.randint(0, 5, (4, C, H, W)).double() / 4).requires_grad_(True)
    rank = torch.arange(H * W * C).view(H, W, C).permute(2, 0, 1)  # (C, H, W): position in generation order
    for c, i, j in itertools.product(range(C), range(H), range(W)):
        x.grad = None
        model(x)[:, c, :, i, j].sum().backward()
        grad = x.grad.abs().sum(0)  # (C, H, W); examples are independent, so this sums per-example gradients
        later = rank >= rank[c, i, j]
        assert torch.all(grad[later] == 0), f"output {(c, i, j)} depends on a later input"
        if rank[c, i, j] > 0:
            assert torch.any(grad[~later] != 0), f"output {(c, i, j)} sees no earlier input"
        if i > 0 and j < W - 1:
            assert torch.any(grad[:, i - 1, j + 1] != 0), f"output {(c, i, j)} has a blind spot up-right"
        if c > 0:
            assert grad[c - 1, i, j] != 0, f"colour {c} does not see colour {c - 1} of its own pixel"


@pytest.mark.parametrize(("shape", "levels"), [((1, 2, 2), 3), ((3, 1, 2), 2)])
def test_log_prob_normalises_over_all_images(shape: tuple[int, int, int], levels: int) -> None:
    """Sum over all L^D images of exp(log_prob - D log L) is 1, so log_prob is log P(k) + D log L."""
    model = tiny(shape, levels).double()
    D = math.prod(shape)
    k = torch.cartesian_prod(*[torch.arange(levels)] * D).view(-1, *shape)  # (L^D, C, H, W)
    with torch.no_grad():
        log_p = model.log_prob(k.double() / (levels - 1)) - D * math.log(levels)
    assert len(k) == levels**D
    assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(("shape", "num_classes"), [((1, 5, 6), None), ((3, 4, 3), None), ((3, 3, 4), 3)])
def test_naive_and_cached_sampling_are_identical(shape: tuple[int, int, int], num_classes: int | None) -> None:
    model = tiny(shape, levels=7, num_classes=num_classes)
    naive = model.sample(4, torch.Generator().manual_seed(5), mode="naive")
    cached = model.sample(4, torch.Generator().manual_seed(5), mode="cached")
    assert torch.equal(naive, cached)
    assert naive.std() > 0  # not a degenerate all-equal draw


def test_samples_lie_on_the_level_grid() -> None:
    model = tiny((1, 4, 4), levels=5)
    x = model.sample(6, torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 4, 4)
    assert x.min() >= 0 and x.max() <= 1
    k = x * 4
    assert torch.equal(k, k.round())
    with pytest.raises(ValueError, match="accepted"):
        model.sample(1, mode="fast")


def test_train_steps_lower_the_loss_on_a_fixed_batch() -> None:
    model = tiny((1, 6, 6), levels=5, lr=1e-2)
    model.configure_optimizers()
    stripes = torch.arange(6) % 5  # a learnable structure: every row is 0 1 2 3 4 0
    x = stripes.expand(8, 1, 6, 6).float() / 4
    first = model.train_step(x)
    for _ in range(10):
        last = model.train_step(x)
    assert list(first)[0] == "loss_bpd"
    assert last["loss_bpd"] < first["loss_bpd"] - 0.1


def test_conditional_model_uses_its_labels() -> None:
    model = tiny((1, 3, 3), num_classes=3)
    x = torch.full((2, 1, 3, 3), 0.5)
    with pytest.raises(GenbenchError, match="labels"):
        model.log_prob(x)
    with torch.no_grad():
        lp = model.log_prob(x, torch.tensor([0, 1]))
    assert lp[0] != lp[1]


def test_bench_records_an_exact_nll(compose) -> None:
    """The whole pipeline on digits: a run record with nll_bpd of kind exact, and a speed entry per mode."""
    from genbench.pipeline import bench

    # FID's domain classifier is tested elsewhere and naive sampling is slow by design: both kept small here.
    speed = ["eval.speed.n=2", "eval.speed.repeats=1", "eval.speed.warmup=0"]
    record = bench(compose(["model=pixelcnn", "train.max_steps=3", "eval=fast", "eval.fid.enabled=false", *speed]))
    nll = [m for m in record["metrics"] if m["name"] == "nll_bpd" and m.get("source") != "baseline"]
    assert len(nll) == 1
    assert nll[0]["kind"] == "exact" and nll[0]["method"] == "exact"
    assert 0 < nll[0]["value"] < math.log2(17) + 1  # digits have 17 levels: a 3-step model is near uniform
    modes = {m["mode"] for m in record["metrics"] if m["name"] == "sample_throughput"}
    assert modes == {"cached", "naive"}
