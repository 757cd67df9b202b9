"""PixelRNN: causality of both variants (with and without channel masking), exact normalisation by
enumeration, skew/unskew, training lowers the loss, samples on the level grid, refusal of toy data."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from models.pixelrnn import PixelRNN, skew, unskew


def image_spec(shape: tuple[int, int, int], levels: int) -> DataSpec:
    return DataSpec("test", shape, levels, (0.0, 1.0), 10, 10, "synthetic")


def tiny(shape: tuple[int, int, int], levels: int, variant: str, **kw: object) -> PixelRNN:
    torch.manual_seed(0)
    kw = {"layers": 2, "hidden": 6, "input_kernel": 3, "output_hidden": 12, **kw}
    return PixelRNN(image_spec(shape, levels), variant=variant, **kw).double()


@pytest.mark.parametrize("variant", ["row", "diagonal"])
@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 3, 4)])
def test_causality(variant: str, shape: tuple[int, int, int]) -> None:
    """d logits(i) / d x(j) is exactly zero for j >= i in raster order (channels inside a pixel), and
    some earlier input matters; the latter guards against a model that sees nothing."""
    model = tiny(shape, 4, variant)
    c, h, w = shape
    # a batch of 8 independent images: summing their gradients keeps a dead ReLU in one from hiding a path
    x = torch.rand(8, c, h, w, dtype=torch.float64, requires_grad=True)
    logits = model.logits(x)  # (8, C, L, H, W)
    order = [(r, col, ch) for r in range(h) for col in range(w) for ch in range(c)]
    for i, (r, col, ch) in enumerate(order):
        (grad,) = torch.autograd.grad(logits[:, ch, :, r, col].sum(), x, retain_graph=True)
        grad = grad.abs().sum(0)  # (C, H, W)
        later = [grad[cj, rj, wj].item() for rj, wj, cj in order[i:]]
        assert all(g == 0.0 for g in later), f"sub-pixel {(ch, r, col)} sees a later input"
        if i > 0:
            earlier = torch.tensor([grad[cj, rj, wj].item() for rj, wj, cj in order[:i]])
            assert earlier.abs().max() > 0, f"sub-pixel {(ch, r, col)} sees no earlier input"


@pytest.mark.parametrize("variant", ["row", "diagonal"])
def test_receptive_field_of_last_pixel(variant: str) -> None:
    """The Diagonal BiLSTM sees the whole past, including the far top-right corner for the last pixel;
    the Row LSTM's context is a triangle, so one layer with a 3x3 input conv misses far-away pixels."""
    model = tiny((1, 5, 7), 4, variant, layers=1)
    x = torch.rand(1, 1, 5, 7, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model.logits(x)[0, 0, :, 4, 0].sum(), x)
    # the Row LSTM's context widens by one column per row (state) plus one (input conv): row 0 up to column 4
    assert grad[0, 0, 0, 4].item() != 0.0
    top_right = grad[0, 0, 0, 6].item()  # far above-right of the bottom-left pixel
    if variant == "diagonal":
        assert top_right != 0.0
    else:
        assert top_right == 0.0


@pytest.mark.parametrize("variant", ["row", "diagonal"])
@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2)])
def test_log_prob_normalises(variant: str, shape: tuple[int, int, int]) -> None:
    """sum over all L^D images of P(k) = exp(log_prob - D log L) is 1."""
    levels = 3
    model = tiny(shape, levels, variant)
    dim = math.prod(shape)
    grid = torch.tensor(list(itertools.product(range(levels), repeat=dim)), dtype=torch.float64)  # (L^D, D)
    x = (grid / (levels - 1)).view(-1, *shape)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(x) - dim * math.log(levels), dim=0)
    assert abs(total.item()) < 1e-10


def test_skew_unskew_roundtrip() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).view(2, 3, 4, 5)
    s = skew(x)
    assert s.shape == (2, 3, 4, 8)
    assert torch.equal(s[:, :, 2, 2:7], x[:, :, 2])  # row 2 shifted right by 2
    assert s[:, :, 2, :2].abs().sum() == 0 and s[:, :, 2, 7:].abs().sum() == 0
    assert torch.equal(unskew(s), x)


@pytest.mark.parametrize("variant", ["row", "diagonal"])
def test_train_steps_lower_loss(variant: str) -> None:
    """Constant images with a random level each: after the first pixel every pixel is predictable."""
    torch.manual_seed(1)
    model = PixelRNN(image_spec((1, 4, 4), 5), variant=variant, layers=1, hidden=8, output_hidden=8, lr=1e-2)
    x = (torch.randint(0, 5, (16, 1, 1, 1)) / 4).expand(16, 1, 4, 4).contiguous()
    model.configure_optimizers()
    losses = [model.train_step(x)["loss"] for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0]
    assert all(math.isfinite(v) for v in losses)


def test_sample_on_grid_and_reproducible() -> None:
    model = tiny((3, 3, 3), 5, "diagonal").float()
    a = model.sample(4, generator=torch.Generator().manual_seed(3))
    b = model.sample(4, generator=torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 3, 3)
    assert torch.equal(a, b)
    k = a * 4
    assert torch.equal(k, k.round()) and k.min() >= 0 and k.max() <= 4
    with pytest.raises(ValueError, match="naive"):
        model.sample(1, mode="cached")


def test_sampling_matches_model_conditionals() -> None:
    """A 1x1x2 image: the empirical distribution of many samples matches exp(log_prob) (chi-square-ish)."""
    levels = 3
    model = tiny((1, 1, 2), levels, "row").float()
    n = 6000
    s = model.sample(n, generator=torch.Generator().manual_seed(0))
    k = (s.view(n, 2) * (levels - 1)).round().long()
    counts = torch.bincount(k[:, 0] * levels + k[:, 1], minlength=levels**2).double()
    grid = torch.tensor(list(itertools.product(range(levels), repeat=2)), dtype=torch.float32)
    with torch.no_grad():
        p = (model.log_prob((grid / (levels - 1)).view(-1, 1, 1, 2)) - 2 * math.log(levels)).exp().double()
    stderr = (n * p * (1 - p)).sqrt()
    assert ((counts - n * p).abs() < 5 * stderr + 1).all()


def test_refuses_toy_data_and_bad_variant() -> None:
    toy = DataSpec("toy2d", (2,), None, (-3.0, 3.0), 10, 10, "synthetic")
    with pytest.raises(GenbenchError, match=r"toy2d.*accepted: digits.*image datasets"):
        PixelRNN(toy)
    with pytest.raises(GenbenchError, match="row, diagonal"):
        PixelRNN(image_spec((1, 4, 4), 3), variant="grid")


def test_bench_records_an_exact_nll(compose) -> None:
    """The whole pipeline on digits: a run record with nll_bpd of kind exact, and a speed entry."""
    from genbench.pipeline import bench

    # naive sampling is one forward pass per sub-pixel, so keep the speed and FID parts small
    speed = ["eval.speed.n=2", "eval.speed.repeats=1", "eval.speed.warmup=0"]
    small = ["model.layers=1", "model.hidden=8", "model.output_hidden=8"]
    record = bench(
        compose(["model=pixelrnn", "train.max_steps=3", "eval=fast", "eval.fid.enabled=false", *small, *speed])
    )
    nll = [m for m in record["metrics"] if m["name"] == "nll_bpd" and m.get("source") != "baseline"]
    assert len(nll) == 1
    assert nll[0]["kind"] == "exact" and nll[0]["method"] == "exact"
    assert 0 < nll[0]["value"] < math.log2(17) + 1  # digits have 17 levels: a 3-step model is near uniform
    modes = {m["mode"] for m in record["metrics"] if m["name"] == "sample_throughput"}
    assert modes == {"naive"}
