"""Tests of models/dbm.py against brute-force enumeration of tiny RBMs and DBMs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from models.dbm import DBM, ais_log_partition


def all_states(n: int) -> torch.Tensor:
    """Every binary vector of length n, `(2^n, n)`, float64."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def tiny_spec(dim: int = 6) -> DataSpec:
    return DataSpec("tiny", (1, 1, dim), 2, (0.0, 1.0), 10, 10, "synthetic")


def tiny_dbm(d: int = 6, h1: int = 4, h2: int = 3, seed: int = 0) -> DBM:
    """A float64 DBM with O(1) random parameters, so the distribution is far from uniform."""
    torch.manual_seed(seed)
    model = DBM(tiny_spec(d), hidden1=h1, hidden2=h2, pcd_chains=8).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
        model.data_mean.copy_(torch.rand(d, dtype=torch.float64))
    return model


def neg_energy(model: DBM, v: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
    """-E(v, h1, h2) for every combination of rows: `(len(v), len(h1), len(h2))`, written from the definition."""
    w1, w2, b, c1, c2 = (t.detach() for t in (model.W1, model.W2, model.b, model.c1, model.c2))
    vw1h1 = torch.einsum("ad,dh,bh->ab", v, w1, h1)[:, :, None]
    h1w2h2 = torch.einsum("bh,hk,ck->bc", h1, w2, h2)[None]
    return vw1h1 + h1w2h2 + (v @ b)[:, None, None] + (h1 @ c1)[None, :, None] + (h2 @ c2)[None, None, :]


def exact_log_z(model: DBM) -> float:
    d, h1, h2 = model.W1.shape[0], model.W1.shape[1], model.W2.shape[1]
    return float(torch.logsumexp(neg_energy(model, all_states(d), all_states(h1), all_states(h2)).flatten(), 0))


def test_ais_matches_brute_force_rbm() -> None:
    """AIS on an RBM (6 visible, 4 hidden) agrees with the sum over all 2^10 states."""
    torch.manual_seed(1)
    w, bv, bh = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, dtype=torch.float64), torch.randn(4).double()
    v, h = all_states(6), all_states(4)
    log_z = float(torch.logsumexp((v @ w @ h.T + (v @ bv)[:, None] + (h @ bh)[None]).flatten(), 0))
    est, stderr = ais_log_partition(w, bv, bh, torch.zeros(6), 200, 1000, torch.Generator().manual_seed(0))
    assert stderr > 0
    assert abs(est - log_z) < 4 * stderr, (est, log_z, stderr)


def test_ais_matches_brute_force_dbm() -> None:
    """DBM AIS (6 visible, 4 + 3 hidden) agrees with the sum over all 2^13 states, for two seeds."""
    model = tiny_dbm()
    log_z = exact_log_z(model)
    for seed in (0, 1):
        est, stderr = model.estimate_log_partition(200, 1000, torch.Generator().manual_seed(seed))
        assert abs(est - log_z) < 4 * stderr, (est, log_z, stderr)


def test_variational_bound_below_exact_log_prob() -> None:
    """The mean-field bound never exceeds the exact log p(v); each mean-field sweep does not lower it."""
    model = tiny_dbm()
    d, h1, h2 = 6, 4, 3
    v = all_states(d)
    exact_unnorm = torch.logsumexp(neg_energy(model, v, all_states(h1), all_states(h2)).flatten(1), 1)  # (2^6,)
    with torch.no_grad():
        bounds = [model.variational_bound(v, *model.mean_field(v, steps)) for steps in (0, 1, 2, 5, 30)]
    for lower, higher in itertools.pairwise(bounds):
        assert torch.all(higher >= lower - 1e-9)
    assert torch.all(bounds[-1] <= exact_unnorm + 1e-9)
    # The bound is informative, not trivially low: within 1 nat on average here.
    assert float((exact_unnorm - bounds[-1]).mean()) < 1.0
    # In DESIGN units, with the exact log Z the estimate is a bound on log P(v) + D log 2.
    model.eval_mf_steps = 30
    model.ais_runs, model.ais_betas = 100, 500
    est, log_z = model.log_prob_estimate(v.reshape(-1, 1, 1, d))
    log_z_ais, stderr = log_z["log_partition"], log_z["log_partition_stderr"]
    assert (log_z["ais_runs"], log_z["ais_betas"]) == (100, 500)
    exact = exact_unnorm - exact_log_z(model) + d * math.log(2)
    assert torch.allclose(est, bounds[-1] - log_z_ais + d * math.log(2))
    assert torch.all(est <= exact + 4 * stderr)
    assert abs(log_z_ais - exact_log_z(model)) < 4 * stderr
    # exact log-probabilities sum to one over all 2^D binary vectors
    assert math.isclose(float(torch.logsumexp(exact - d * math.log(2), 0)), 0.0, abs_tol=1e-9)


def test_gibbs_sweep_leaves_exact_distribution_invariant() -> None:
    """The model's conditionals define a Gibbs sweep whose transition matrix fixes the exact joint."""
    model = tiny_dbm(d=3, h1=2, h2=2, seed=2)
    d, n1, n2 = 3, 2, 2
    v, h1, h2 = all_states(d), all_states(n1), all_states(n2)
    joint = torch.softmax(neg_energy(model, v, h1, h2).flatten(), 0).reshape(len(v), len(h1), len(h2))

    def prob(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # P(x | p) for every row pair, (rows p, rows x)
        return torch.prod(p[:, None] * x[None] + (1 - p[:, None]) * (1 - x[None]), -1)

    with torch.no_grad():
        # state (v, h2) -> h1' ~ p(h1 | v, h2) -> (v', h2') ~ p(v | h1') p(h2 | h1')
        vv, hh2 = v.repeat_interleave(len(h2), 0), h2.repeat(len(v), 1)  # every (v, h2) pair
        t_h1 = prob(model.p_h1(vv, hh2), h1).reshape(len(v), len(h2), len(h1))
        t_v, t_h2 = prob(model.p_v(h1), v), prob(model.p_h2(h1), h2)  # (h1', v'), (h1', h2')
    # marginal over (v, h2) before the sweep, and after it
    p_vh2 = joint.sum(1)
    after_h1 = torch.einsum("ac,acb->b", p_vh2, t_h1)
    p_vh2_after = torch.einsum("b,ba,bc->ac", after_h1, t_v, t_h2)
    assert torch.allclose(p_vh2_after, p_vh2, atol=1e-12)
    assert torch.allclose(after_h1, joint.sum((0, 2)), atol=1e-12)


@pytest.mark.parametrize("pretrain_steps", [4, 0])
def test_train_step_phases_and_finite_scalars(pretrain_steps: int) -> None:
    torch.manual_seed(0)
    spec = DataSpec("tiny", (1, 4, 4), 17, (0.0, 1.0), 10, 10, "synthetic")
    model = DBM(spec, hidden1=8, hidden2=5, pretrain_steps=pretrain_steps, pcd_chains=6)
    model.configure_optimizers()
    x = torch.rand(10, 1, 4, 4)
    phases = []
    for _ in range(7):
        w1_before = model.W1.detach().clone()
        out = model.train_step(x)
        assert list(out) == ["recon_error", "phase", "neg_free_energy_mf"]  # one curve column each, every phase
        # scalars as the trainer takes them: 0-dim tensors (read once per logging interval) or floats
        assert all(isinstance(v, float) or v.dim() == 0 for v in out.values())
        assert all(math.isfinite(float(v)) for v in out.values())
        phases.append(out["phase"])
        # the top RBM's phase (1) leaves W1 alone; the others move it
        assert torch.equal(model.W1, w1_before) == (out["phase"] == 1.0)
    expected = [0.0] * (pretrain_steps // 2) + [1.0] * (pretrain_steps - pretrain_steps // 2)
    assert phases == (expected + [2.0] * 7)[:7]
    assert int(model.num_steps) == 7
    assert {"chain_v", "chain_h2", "num_steps", "data_mean"} <= set(model.state_dict())


def test_sample_shape_range_and_modes() -> None:
    model = DBM(tiny_spec(6), hidden1=4, hidden2=3)
    gen = torch.Generator().manual_seed(0)
    s = model.sample(5, gen, gibbs_steps=3)
    assert s.shape == (5, 1, 1, 6)
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    a = model.sample(4, torch.Generator().manual_seed(1), mode="gibbs10")
    b = model.sample(4, torch.Generator().manual_seed(1), gibbs_steps=10)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="gibbs10"):
        model.sample(2, mode="bogus")


def test_rejects_toy_data_and_non_binary_inputs() -> None:
    toy = DataSpec("toy2d", (2,), None, (-3.0, 3.0), 10, 10, "toy")
    with pytest.raises(GenbenchError, match="image datasets"):
        DBM(toy)
    model = DBM(tiny_spec(6), hidden1=4, hidden2=3)
    with pytest.raises(GenbenchError, match="binary"):
        model.log_prob_estimate(torch.full((2, 1, 1, 6), 0.5))


def test_bench_records_an_estimated_nll(compose) -> None:
    """The whole pipeline on digits: nll_bpd of kind estimate on binarized data (L = 2), log Z in the record."""
    from genbench.pipeline import bench

    small = ["model.ais_betas=50", "model.ais_runs=10", "model.gibbs_steps=5", "model.pretrain_steps=2"]
    speed = ["eval.speed.n=2", "eval.speed.repeats=1", "eval.speed.warmup=0"]
    cfg = compose(["model=dbm", "train.max_steps=3", "eval=fast", "eval.fid.enabled=false", *small, *speed])
    record = bench(cfg)
    nll = [m for m in record["metrics"] if m["name"] == "nll_bpd" and m.get("source") != "baseline"]
    assert len(nll) == 1 and nll[0]["kind"] == "estimate"
    assert math.isfinite(nll[0]["value"]) and nll[0]["value"] > 0
    # log Z and its spread over AIS runs are recorded with the number they enter
    assert nll[0]["ais_runs"] == 10 and nll[0]["ais_betas"] == 50
    assert math.isfinite(nll[0]["log_partition"]) and nll[0]["log_partition_stderr"] > 0
    assert record["model_info"]["data_variant"] == "binarized"
    assert "stochastic" in record["model_info"]["binarization"]
    gaps = [m for m in record["metrics"] if m["name"] == "mean_field_gap"]  # eval=fast: 1 and 10 samples
    assert [(m["samples"], m["n"], m["data"]) for m in gaps] == [(1, 297, "binarized"), (10, 297, "binarized")]
    modes = {m["mode"] for m in record["metrics"] if m["name"] == "sample_throughput"}
    assert modes == set(DBM.sampling_modes)


def test_partition_family_records_log_z_per_schedule_length_settling_on_the_truth() -> None:
    from omegaconf import OmegaConf

    from genbench.data import Dataset
    from genbench.metrics import partition
    from genbench.metrics.context import EvalContext

    model = tiny_dbm(seed=3)
    data = Dataset(tiny_spec(), torch.zeros(10, 1, 1, 6).double(), torch.zeros(10, 1, 1, 6).double())  # the model's
    cfg = OmegaConf.create({"seed": 0, "partition": {"enabled": True, "betas": [2, 1000], "runs": 100}})
    found = partition.evaluate(EvalContext(model, data, cfg))
    short, long = (m for m in found if m.name == "log_partition")
    gaps = {m.extra["samples"]: m for m in found if m.name == "mean_field_gap"}
    assert sorted(gaps) == [1, 10, 100, 1000] and all(m.kind == "lower_bound" and m.n == 10 for m in gaps.values())
    assert gaps[1000].extra["data"] == "binarized"
    assert (short.extra["ais_betas"], long.extra["ais_betas"]) == (2, 1000)
    assert short.to_dict()["variant"] == {"ais_betas": 2} and long.n == 100
    truth = exact_log_z(model)
    assert abs(long.value - truth) < 4 * long.stderr  # a long schedule settles on the enumerated log Z
    assert abs(short.value - truth) > abs(long.value - truth)  # two temperatures do not


def test_mean_field_gap_is_measured_by_an_importance_estimate_that_tightens_onto_the_enumerated_truth() -> None:
    """h1 summed out matches brute force; the importance estimate of log p*(v) lies above the mean-field bound in
    expectation, below the truth in expectation, and reaches it with many samples, for every v of a tiny DBM."""
    model = tiny_dbm(seed=2)
    d, h1, h2 = 6, 4, 3
    v = all_states(d)
    joint = neg_energy(model, v, all_states(h1), all_states(h2))  # (2^6, 2^4, 2^3)
    with torch.no_grad():
        given_h2 = torch.stack([model.log_unnormalized_given_h2(v, h.expand(len(v), h2)) for h in all_states(h2)], 1)
    torch.testing.assert_close(given_h2, torch.logsumexp(joint, 1))  # (2^6, 2^3): h1 summed out exactly
    exact = torch.logsumexp(joint.flatten(1), 1)
    model.eval_mf_steps = 30
    bound, many = model.mean_field_gap(v, 20_000, torch.Generator().manual_seed(0))
    assert torch.all(bound <= exact + 1e-9) and float((exact - bound).mean()) > 0.05  # a gap worth measuring
    torch.testing.assert_close(many, exact, atol=0.02, rtol=0)
    # One sample, many times: its mean is at least the bound and at most the truth (up to its standard error).
    repeats = v.repeat(4000, 1)
    _, once = model.mean_field_gap(repeats, 1, torch.Generator().manual_seed(1))
    once = once.view(4000, len(v))
    mean, se = once.mean(0), once.std(0) / math.sqrt(4000)
    assert torch.all(mean >= bound - 4 * se) and torch.all(mean <= exact + 4 * se)
    assert float((mean - bound).mean()) > 0  # summing h1 out already beats the factorized q(h1)
