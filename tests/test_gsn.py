"""Tests of models/gsn.py: walkback training, the sampling chain, and a brief fit of ring8."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data import DataSpec, load_toy2d
from genbench.errors import GenbenchError
from models.gsn import GSN, binomial_draw, corrupt

IMAGE_SPEC = DataSpec("tiny", (1, 4, 4), 17, (0.0, 1.0), 10, 10, "synthetic")


def test_corruptions() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.full((2000, 16), 0.3)
    sp = corrupt(x, "salt_pepper", 0.4, gen)
    changed = sp != 0.3
    assert math.isclose(float(changed.float().mean()), 0.4, abs_tol=0.02)
    assert set(sp[changed].unique().tolist()) == {0.0, 1.0}
    g = corrupt(x, "gaussian", 0.2, gen) - x
    assert math.isclose(float(g.std()), 0.2, rel_tol=0.05)


def test_walkback_loss_decreases_on_fixed_batch() -> None:
    torch.manual_seed(0)
    model = GSN(IMAGE_SPEC, hidden_dim=32, walkback=3)
    model.configure_optimizers()
    # two binary prototypes: structure a denoiser can learn (random bits could not beat 16 log 2 per step)
    prototypes = (torch.rand(2, 1, 4, 4) > 0.5).float()
    x = prototypes[torch.arange(32) % 2]

    def loss_with_fixed_noise() -> float:
        torch.manual_seed(123)  # same corruption and hidden noise before and after training
        with torch.no_grad():
            return float(model.walkback_loss(x)[0])

    before = loss_with_fixed_noise()
    for _ in range(30):
        out = model.train_step(x)
        assert list(out) == ["loss", "recon_nll"] and all(math.isfinite(v) for v in out.values())
    assert loss_with_fixed_noise() < 0.7 * before


def test_walkback_sums_one_term_per_step() -> None:
    """With walkback = 1 the loss is the first reconstruction's NLL; with 3 it is larger (a sum of 3 NLLs)."""
    torch.manual_seed(0)
    model = GSN(IMAGE_SPEC, hidden_dim=16, walkback=1, hidden_noise=0.0)
    x = torch.rand(8, 1, 4, 4)
    total, first = model.walkback_loss(x)
    assert torch.equal(total, first)
    model.walkback = 3
    with torch.no_grad():
        total3, first3 = model.walkback_loss(x)
    assert float(total3) > float(first3)


def test_chain_shapes_range_and_lengths() -> None:
    torch.manual_seed(0)
    model = GSN(IMAGE_SPEC, hidden_dim=16)
    chains = model.sample_chain(6, [0, 1, 4], torch.Generator().manual_seed(0))
    assert list(chains) == [0, 1, 4]
    for x in chains.values():
        assert x.shape == (6, 1, 4, 4)
        assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert not torch.allclose(chains[1], chains[4])
    # the same chains: the state after 4 steps with one generator is reproducible
    again = model.sample_chain(6, [4], torch.Generator().manual_seed(0))
    assert torch.equal(again[4], chains[4])
    s = model.sample(7, torch.Generator().manual_seed(1), burn_in=2, chain_length=3)  # 3 chains, 3 states each
    assert s.shape == (7, 1, 4, 4)
    assert torch.equal(
        model.sample(5, torch.Generator().manual_seed(2), mode="burn10"),
        model.sample(5, torch.Generator().manual_seed(2), burn_in=10),
    )
    with pytest.raises(ValueError, match="burn10"):
        model.sample(2, mode="bogus")


def test_image_chain_moves_to_a_binomial_draw_on_the_grey_levels() -> None:
    """`state="sample"`: values on the L = 17 levels k / 16, mean sigmoid(logit), binomial variance p(1-p)/16;
    `state="mean"`: the sigmoid itself."""
    logits = torch.tensor([-2.0, 0.0, 1.5]).repeat(20_000, 1)
    p = torch.sigmoid(logits[0])
    draw = GSN(IMAGE_SPEC, hidden_dim=8).next_state(logits, torch.Generator().manual_seed(0))
    assert torch.equal(draw * 16, (draw * 16).round()) and float(draw.min()) >= 0 and float(draw.max()) <= 1
    assert torch.allclose(draw.mean(0), p, atol=0.005)
    assert torch.allclose(draw.var(0), p * (1 - p) / 16, rtol=0.05)
    assert torch.equal(GSN(IMAGE_SPEC, hidden_dim=8, state="mean").next_state(logits), torch.sigmoid(logits))
    binary = DataSpec("tiny", (1, 4, 4), 2, (0.0, 1.0), 10, 10, "synthetic")  # L = 2: a Bernoulli draw
    bits = GSN(binary, hidden_dim=8).next_state(logits, torch.Generator().manual_seed(0))
    assert set(bits.unique().tolist()) == {0.0, 1.0}


def test_binomial_draw_matches_the_binomial_pmf_across_chunks_and_extremes() -> None:
    """40 trials (chunks of 16, 16, 8) and 255 (MNIST's levels): the empirical distribution is the binomial pmf
    within sampling error (total variation), and p = 0 / 1 give 0 / all trials."""
    from scipy.stats import binom

    gen = torch.Generator().manual_seed(0)
    for trials in (40, 255):
        probs = torch.tensor([0.0, 0.03, 0.5, 0.9, 0.999, 1.0])
        draws = binomial_draw(probs.repeat(40_000, 1), trials, gen)  # (40000, 6)
        assert torch.equal(draws, draws.round()) and float(draws.min()) >= 0 and float(draws.max()) <= trials
        assert float(draws[:, 0].abs().max()) == 0 and float(draws[:, -1].min()) == trials
        for j, prob in enumerate(probs.tolist()[1:-1], start=1):
            counts = torch.bincount(draws[:, j].long(), minlength=trials + 1).double() / 40_000
            tv = 0.5 * float((counts - torch.from_numpy(binom.pmf(range(trials + 1), trials, prob))).abs().sum())
            assert tv < 0.03, (trials, prob, tv)


def test_bad_arguments_name_accepted_values() -> None:
    toy = DataSpec("toy2d", (2,), None, (-3.0, 3.0), 10, 10, "toy")
    with pytest.raises(GenbenchError, match="salt_pepper, gaussian"):
        GSN(IMAGE_SPEC, noise="uniform")
    with pytest.raises(GenbenchError, match="sample, mean"):
        GSN(IMAGE_SPEC, state="median")
    with pytest.raises(GenbenchError, match="noise=gaussian"):
        GSN(toy, noise="salt_pepper")


def test_toy_chain_concentrates_on_ring_after_brief_training() -> None:
    torch.manual_seed(0)
    data = load_toy2d("ring8", n_train=4096, n_test=16)
    model = GSN(data.spec, hidden_dim=64, walkback=2, hidden_noise=0.0, lr=3e-3)
    model.configure_optimizers()
    for step in range(400):
        model.train_step(data.train[(step * 128) % 4096 :][:128])
    chains = model.sample_chain(400, [0, 20], torch.Generator().manual_seed(0))
    centres = data.density.centers.float()

    def mean_distance(x: torch.Tensor) -> float:
        return float(torch.cdist(x, centres).min(1).values.mean())

    assert chains[20].shape == (400, 2)
    start, end = mean_distance(chains[0]), mean_distance(chains[20])
    assert end < 0.6 * start, (start, end)


@pytest.mark.parametrize("dataset", ["digits", "toy2d"])
def test_bench_writes_a_record(compose, dataset: str) -> None:
    """The whole pipeline: a GSN has no likelihood of its own, so its nll comes from Parzen, kind estimate."""
    from genbench.pipeline import bench

    speed = ["eval.speed.n=2", "eval.speed.repeats=1", "eval.speed.warmup=0"]
    small = ["model.hidden_dim=16", "model.burn_in=3"]
    # FID on toy2d uses raw features (cheap); on digits the domain classifier is tested elsewhere, so off here.
    fid = ["eval.fid.n_gen=64"] if dataset == "toy2d" else ["eval.fid.enabled=false"]
    cfg = compose(["model=gsn", f"dataset={dataset}", "train.max_steps=3", "eval=fast", *fid, *small, *speed])
    record = bench(cfg)
    assert record["status"] == "ok" and record["train"]["steps"] == 3
    nll = [m for m in record["metrics"] if m["name"] == "nll_nats" and m.get("source") != "baseline"]
    assert nll and all(m["kind"] == "estimate" for m in nll)
    modes = {m["mode"] for m in record["metrics"] if m["name"] == "sample_throughput"}
    assert modes == set(GSN.sampling_modes)
    # a chain's mode changes its samples: one FID per mode, each from the same number of samples
    fids = [m for m in record["metrics"] if m["name"] == "fid" and m["source"] == "model"]
    assert sorted(m["mode"] for m in fids) == (sorted(GSN.sampling_modes) if dataset == "toy2d" else [])
    assert len({m["n_gen"] for m in fids}) <= 1
