"""Tests of genbench/metrics/chain.py: FID against chain length for chain samplers (a GSN on toy data)."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf

from genbench.data import load_toy2d
from genbench.metrics import chain
from genbench.metrics.fid import frechet_distance, statistics
from models.gsn import GSN


def eval_cfg(lengths: list[int], n_gen: int = 64) -> object:
    fid = {"features": "auto", "batch_size": 32, "n_gen_cpu": None, "n_ref": 100, "cache_dir": None}
    return OmegaConf.create({"fid": fid, "chain": {"enabled": True, "lengths": lengths, "n_gen": n_gen}})


def test_fid_per_chain_length_matches_hand_computation() -> None:
    torch.manual_seed(0)
    data = load_toy2d("ring8", n_train=64, n_test=100)
    model = GSN(data.spec, hidden_dim=8)
    metrics = chain.evaluate(model, data, eval_cfg([5, 0, 1]), torch.Generator().manual_seed(3))
    assert [m.extra["chain_length"] for m in metrics] == [0, 1, 5]
    assert all(m.name == "fid" and m.kind == "estimate" and m.extra["features"] == "raw" for m in metrics)
    # the same chains by hand: two batches of 32 from one generator, raw features = the points themselves
    gen = torch.Generator().manual_seed(3)
    batches = [model.sample_chain(32, [0, 1, 5], gen) for _ in range(2)]
    ref_mu, ref_sigma = statistics(data.test.numpy())
    for m in metrics:
        x = np.concatenate([b[m.extra["chain_length"]].numpy() for b in batches])
        mu, sigma = statistics(x)
        assert np.isclose(m.value, frechet_distance(mu, sigma, ref_mu, ref_sigma), rtol=1e-5)
    assert metrics[0].value != metrics[2].value


def test_models_without_a_chain_get_nothing() -> None:
    data = load_toy2d("ring8", n_train=64, n_test=100)

    class NoChain(torch.nn.Module):
        pass

    assert chain.evaluate(NoChain(), data, eval_cfg([1]), None) == []
    for section in ("chain", "fid"):  # either switch turns it off
        cfg = eval_cfg([1])
        cfg[section].enabled = False
        assert chain.evaluate(GSN(data.spec, hidden_dim=8), data, cfg, None) == []
