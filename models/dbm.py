"""A deep Boltzmann machine with two hidden layers of binary units, on binarized images.

Papers:
    Salakhutdinov & Hinton 2009, "Deep Boltzmann Machines" (AISTATS): greedy pre-training of a stack of RBMs
        with doubled inputs, joint training with mean-field for the data term and persistent Markov chains for
        the model term, a variational lower bound per example and AIS for the partition function.
    Salakhutdinov & Murray 2008, "On the Quantitative Analysis of Deep Belief Networks" (ICML): AIS for RBMs,
        annealing from a base-rate model.
    Neal 2001, "Annealed Importance Sampling".

With binary `v` (D), `h1` (H1), `h2` (H2) the energy is

    E(v, h1, h2) = -v W1 h1 - h1 W2 h2 - b v - c1 h1 - c2 h2.

The layers are bipartite: `h1` on one side, `(v, h2)` on the other. So the DBM is an RBM whose "visible" layer
`y = [v, h2]` has weight `[W1; W2^T]` to its hidden layer `x = h1`, and `Z_DBM` is that RBM's partition function.
AIS over `h1`, with `(v, h2)` summed out analytically, is the RBM AIS of Salakhutdinov & Murray applied to it;
`ais_log_partition` works on that bipartite form and serves plain RBMs as well.

Likelihood units (DESIGN.md): `log_prob_estimate` returns `log P(v) + D log 2` for a binary `v`, so the pipeline's
bits/dim formula applies with `L = 2`. It is the mean-field lower bound minus an AIS estimate of `log Z`; since
AIS gives an unbiased `Z` (and so, on average, a low `log Z`), the result is an estimate, not a bound.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import DataSpec, binarize
from genbench.errors import GenbenchError
from genbench.metrics.likelihood import chunked_logmeanexp
from genbench.model import GenerativeModel, rand, require_discrete_images

# ----------------------------------------------------------------------------- pure maths


def bernoulli(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary samples with probabilities `p`, drawn from `generator` (or the global RNG)."""
    return (rand(tuple(p.shape), generator, p.device) < p).to(p.dtype)


def entropy_bernoulli(mu: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of factorized Bernoullis with means `mu`, summed over the last dimension."""
    mu = mu.clamp(1e-7, 1 - 1e-7)
    return -(mu * mu.log() + (1 - mu) * (1 - mu).log()).sum(-1)


def ais_log_partition(
    weight: torch.Tensor,
    bias_y: torch.Tensor,
    bias_x: torch.Tensor,
    base_bias_y: torch.Tensor,
    n_runs: int,
    n_betas: int,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """AIS estimate of `log Z` of the bipartite model `p(x, y) ∝ exp(y W x + bias_y y + bias_x x)`.

    The annealing path is `p_beta ∝ exp(beta (y W x + bias_y y + bias_x x) + (1 - beta) base_bias_y y)`,
    from a base-rate model over `y` (with `x` uniform), whose `Z` is known, to the target. The chains live
    on `x`; `y` is summed out analytically in the importance weights, and each transition is one Gibbs sweep
    `y | x`, `x | y` at the current beta (Salakhutdinov & Murray 2008).

    Args:
        weight: `(Y, X)`.
        bias_y, bias_x: `(Y,)`, `(X,)`.
        base_bias_y: `(Y,)` biases of the base-rate model (e.g. the logit of the data mean).
        n_runs: independent annealing runs (chains).
        n_betas: number of inverse temperatures, from 0 to 1 inclusive.
        generator: randomness of the runs.

    Returns:
        `(log Z estimate, its standard error)`; the error is the delta-method spread of the importance
        weights over runs, `std(w) / (sqrt(n_runs) mean(w))`.
    """
    weight, bias_y, bias_x, base_bias_y = (t.double() for t in (weight, bias_y, bias_x, base_bias_y))
    betas = torch.linspace(0.0, 1.0, n_betas, dtype=torch.float64).tolist()

    def log_f(x: torch.Tensor, beta: float) -> torch.Tensor:  # unnormalized log p_beta(x), (R,)
        act = beta * (x @ weight.T + bias_y) + (1 - beta) * base_bias_y  # (R, Y)
        return beta * (x @ bias_x) + F.softplus(act).sum(-1)

    x = bernoulli(torch.full((n_runs, weight.shape[1]), 0.5, dtype=torch.float64, device=weight.device), generator)
    log_w = torch.zeros(n_runs, dtype=torch.float64, device=weight.device)
    for prev, beta in zip(betas[:-1], betas[1:], strict=True):
        log_w += log_f(x, beta) - log_f(x, prev)
        if beta < 1.0:  # one Gibbs sweep that leaves p_beta invariant
            y = bernoulli(torch.sigmoid(beta * (x @ weight.T + bias_y) + (1 - beta) * base_bias_y), generator)
            x = bernoulli(torch.sigmoid(beta * (y @ weight + bias_x)), generator)
    log_z_base = float(F.softplus(base_bias_y).sum()) + weight.shape[1] * math.log(2.0)
    log_mean_w = float(torch.logsumexp(log_w, 0)) - math.log(n_runs)
    w = torch.exp(log_w - log_w.max())  # scaled weights; the ratio std/mean is scale-free
    stderr = float(w.std() / (math.sqrt(n_runs) * w.mean())) if n_runs > 1 else float("nan")
    return log_z_base + log_mean_w, stderr


# ----------------------------------------------------------------------------- the model


def _forget_host_counters(module: DBM, incompatible_keys: object) -> None:
    module._host_steps = module._host_count = None


class DBM(GenerativeModel):
    """Two-hidden-layer DBM on stochastically binarized images (Salakhutdinov & Hinton 2009).

    Training runs in `train_step`, phase by step count: the first `pretrain_steps // 2` steps train the
    bottom RBM (visible input doubled, CD-`cd_k`), the next ones the top RBM (its hidden input doubled), and
    then the whole DBM jointly: mean-field posteriors for the data term, persistent Gibbs chains for the
    model term, one SGD-with-momentum update.

    Args:
        spec: the data; images only (they are binarized).
        hidden1, hidden2: sizes of the two hidden layers.
        lr, momentum, weight_decay: SGD settings (weight decay on the weights only).
        pretrain_steps: steps of greedy RBM pre-training (half per layer) before joint training.
        cd_k: Gibbs steps of contrastive divergence in pre-training.
        mf_steps: mean-field iterations for the data term in training.
        pcd_chains, pcd_steps: number of persistent chains and Gibbs sweeps per update.
        gibbs_steps: default chain length of `sample`.
        eval_mf_steps: mean-field iterations for the variational bound at evaluation.
        ais_runs, ais_betas: AIS runs and inverse temperatures for `log Z`.
        init_std: standard deviation of the initial weights.
    """

    likelihood = "estimate"
    family = "boltzmann"
    mode_changes_samples = True
    data_variant = "binarized"
    sampling_modes = ("default", "gibbs10", "gibbs100", "gibbs1000")

    def __init__(
        self,
        spec: DataSpec,
        hidden1: int = 100,
        hidden2: int = 50,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        pretrain_steps: int = 1000,
        cd_k: int = 1,
        mf_steps: int = 10,
        pcd_chains: int = 100,
        pcd_steps: int = 5,
        gibbs_steps: int = 200,
        eval_mf_steps: int = 30,
        ais_runs: int = 100,
        ais_betas: int = 2000,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(spec)
        require_discrete_images(spec, "dbm")
        dim = spec.dim
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.pretrain_steps, self.cd_k, self.mf_steps = pretrain_steps, cd_k, mf_steps
        self.pcd_steps, self.gibbs_steps, self.eval_mf_steps = pcd_steps, gibbs_steps, eval_mf_steps
        self.ais_runs, self.ais_betas = ais_runs, ais_betas
        self.W1 = nn.Parameter(init_std * torch.randn(dim, hidden1))
        self.W2 = nn.Parameter(init_std * torch.randn(hidden1, hidden2))
        self.b = nn.Parameter(torch.zeros(dim))
        self.c1 = nn.Parameter(torch.zeros(hidden1))
        self.c2 = nn.Parameter(torch.zeros(hidden2))
        # Visible bias of the top RBM during pre-training; the DBM keeps c1 from the bottom RBM.
        self.c1_top = nn.Parameter(torch.zeros(hidden1))
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        # Persistent chains (model term) and the data mean (the AIS base-rate model) checkpoint with the model.
        self.register_buffer("chain_v", torch.zeros(pcd_chains, dim))
        self.register_buffer("chain_h2", torch.zeros(pcd_chains, hidden2))
        self.register_buffer("data_mean", torch.full((dim,), 0.5))
        self.register_buffer("data_count", torch.zeros((), dtype=torch.long))  # examples seen (older files: float64)
        # num_steps and data_count on the host, read once (None: not read yet, or a state dict was loaded since), so
        # the branches of a training step never wait for the device.
        self._host_steps: int | None = None
        self._host_count: int | None = None
        self.register_load_state_dict_post_hook(_forget_host_counters)
        self._log_z_key: tuple | None = None  # the parameter state the cached log Z belongs to
        self._log_z: dict[str, float | int] = {}

    # ------------------------------------------------------------------ conditionals and inference

    def p_h1(self, v: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v @ self.W1 + h2 @ self.W2.T + self.c1)

    def p_v(self, h1: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h1 @ self.W1.T + self.b)

    def p_h2(self, h1: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h1 @ self.W2 + self.c2)

    def gibbs_step(
        self, v: torch.Tensor, h2: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One sweep of the bipartite Gibbs sampler: `h1 | v, h2`, then `v, h2 | h1`. Returns `(v, h1, h2)`."""
        h1 = bernoulli(self.p_h1(v, h2), generator)
        return bernoulli(self.p_v(h1), generator), h1, bernoulli(self.p_h2(h1), generator)

    def mean_field(self, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-point updates of the factorized posterior `q(h1) q(h2)` given `v` (B, D).

        Starts from the doubled bottom-up pass of the pre-trained stack (S&H 2009, Sec. 3.1), then
        alternates the coordinate updates, each of which cannot decrease the variational bound.
        """
        mu1 = torch.sigmoid(2 * (v @ self.W1) + self.c1)
        mu2 = self.p_h2(mu1)
        for _ in range(steps):
            mu1 = self.p_h1(v, mu2)
            mu2 = self.p_h2(mu1)
        return mu1, mu2

    def variational_bound(self, v: torch.Tensor, mu1: torch.Tensor, mu2: torch.Tensor) -> torch.Tensor:
        """`E_q[-E(v, h)] + H(q)` per example (nats): a lower bound on `log sum_h exp(-E(v, h))`."""
        neg_energy = (
            v @ self.b + ((v @ self.W1) * mu1).sum(-1) + ((mu1 @ self.W2) * mu2).sum(-1) + mu1 @ self.c1 + mu2 @ self.c2
        )
        return neg_energy + entropy_bernoulli(mu1) + entropy_bernoulli(mu2)

    def log_unnormalized_given_h2(self, v: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """`log sum_h1 exp(-E(v, h1, h2))` (nats), `h1` summed out exactly: given `v` and `h2` its units are
        independent, each contributing `softplus` of its input."""
        return v @ self.b + h2 @ self.c2 + F.softplus(v @ self.W1 + h2 @ self.W2.T + self.c1).sum(-1)

    @torch.no_grad()
    def mean_field_gap(
        self, v: torch.Tensor, n_samples: int, generator: torch.Generator | None = None, chunk: int = 100
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean-field bound on `log p*(v) = log sum_h exp(-E(v, h))` and an importance estimate of it, per
        example (nats; `log Z` cancels in their difference, so neither needs it).

        The estimate sums `h1` out exactly and draws `h2` `n_samples` times from the mean-field `q(h2 | v)`:
        `log mean_k p*(v, h2_k) / q(h2_k)`. Like IWAE, its expectation is a lower bound on `log p*(v)` that
        rises with `n_samples` towards it, and it is never below the mean-field bound in expectation (summing
        `h1` out beats any factorized `q(h1)`). So `estimate - bound` is, in expectation, a lower bound on the
        mean-field bound's gap.
        """
        mu1, mu2 = self.mean_field(v, self.eval_mf_steps)
        bound = self.variational_bound(v, mu1, mu2)
        q = mu2.clamp(1e-6, 1 - 1e-6)  # a proposal must give every h2 some mass; log q uses the same q
        log_q1, log_q0 = q.log(), (-q).log1p()

        def log_weights(k: int) -> torch.Tensor:  # (k, B)
            h2 = bernoulli(q.expand(k, *q.shape), generator)  # (k, B, H2)
            return self.log_unnormalized_given_h2(v, h2) - (h2 * log_q1 + (1 - h2) * log_q0).sum(-1)

        return bound, chunked_logmeanexp(log_weights, n_samples, chunk)

    def bipartite(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The DBM as an RBM between `y = [v, h2]` and `x = h1`: `(weight, bias_y, bias_x, base_bias_y)`."""
        weight = torch.cat([self.W1, self.W2.T], dim=0)  # (D + H2, H1)
        bias_y = torch.cat([self.b, self.c2])
        base_v = torch.logit(self.data_mean.clamp(1e-3, 1 - 1e-3))  # base-rate model of the data
        base_bias_y = torch.cat([base_v, torch.zeros_like(self.c2)])
        return weight.detach(), bias_y.detach(), self.c1.detach(), base_bias_y.detach()

    # ------------------------------------------------------------------ likelihood

    @torch.no_grad()
    def estimate_log_partition(
        self, n_runs: int | None = None, n_betas: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[float, float]:
        """AIS estimate of `log Z` and its standard error over runs (defaults: `ais_runs`, `ais_betas`)."""
        weight, bias_y, bias_x, base = self.bipartite()
        return ais_log_partition(
            weight, bias_y, bias_x, base, n_runs or self.ais_runs, n_betas or self.ais_betas, generator
        )

    def _parameter_key(self) -> tuple:
        return (int(self.num_steps), *(float(p.detach().double().sum()) for p in self.parameters()))

    def log_partition(self, generator: torch.Generator | None = None) -> dict[str, float | int]:
        """The AIS estimate of `log Z` with its standard error and protocol, estimated once per parameter state
        (every test batch is scored against the same normaliser)."""
        key = (*self._parameter_key(), self.ais_runs, self.ais_betas)
        if self._log_z_key != key:
            log_z, stderr = self.estimate_log_partition(generator=generator)
            self._log_z = {
                "log_partition": log_z,
                "log_partition_stderr": stderr,
                "ais_runs": self.ais_runs,
                "ais_betas": self.ais_betas,
            }
            self._log_z_key = key
        return dict(self._log_z)

    @torch.no_grad()
    def log_prob_estimate(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float | int]]:
        """Mean-field bound minus AIS `log Z`, plus `D log 2`: `log P(v) + D log 2` nats per example, and the
        `log Z` estimate it used (`log_partition`, its stderr, AIS runs and temperatures).

        `x` must be binary (the likelihood module passes a fixed binarization of the test split).
        """
        v = x.flatten(1)  # (B, D)
        if not torch.all((v == 0) | (v == 1)):
            raise GenbenchError("DBM.log_prob_estimate needs binary inputs (a binarization of the data)")
        log_z = self.log_partition(generator)
        mu1, mu2 = self.mean_field(v, self.eval_mf_steps)
        bound = self.variational_bound(v, mu1, mu2) - log_z["log_partition"]
        return bound + v.shape[1] * math.log(2.0), log_z

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        weights = [self.W1, self.W2]
        biases = [self.b, self.c1, self.c2, self.c1_top]
        groups = [{"params": weights, "weight_decay": self.weight_decay}, {"params": biases, "weight_decay": 0.0}]
        self.optimizers = {"sgd": torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum)}
        return self.optimizers

    def _ascend(self, grads: dict[str, torch.Tensor]) -> None:
        """Set ascent directions on the log-likelihood as (negated) gradients and take one optimizer step."""
        opt = self.optimizers["sgd"]
        opt.zero_grad(set_to_none=True)  # parameters without a gradient this phase are left untouched
        for name, g in grads.items():
            param = getattr(self, name)
            param.grad = -g.to(param.dtype)  # under autocast g is bf16/fp16; a gradient has its parameter's dtype
        opt.step()

    def _steps_done(self) -> int:
        """Training steps taken, from the host copy (the buffers are read once after construction or a load)."""
        if self._host_steps is None or self._host_count is None:
            self._host_steps, self._host_count = int(self.num_steps), int(self.data_count)
        return self._host_steps

    def _update_data_mean(self, v: torch.Tensor) -> None:
        steps = self._steps_done()
        n = self._host_count + v.shape[0]
        self.data_mean += (v.sum(0) - v.shape[0] * self.data_mean) / n
        self.data_count.fill_(n)
        self._host_count = n
        if steps == 0:  # Hinton's guide: start the visible biases at the log odds of the data
            self.b.data.copy_(torch.logit(self.data_mean.clamp(1e-3, 1 - 1e-3)))

    def _pretrain_bottom(self, v: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """CD-k on the bottom RBM with its visible input counted twice (S&H 2009, Sec. 3.1)."""
        ph = torch.sigmoid(2 * (v @ self.W1) + self.c1)
        h = bernoulli(ph)
        for _ in range(self.cd_k):
            pv = self.p_v(h)
            ph_neg = torch.sigmoid(2 * (pv @ self.W1) + self.c1)
            h = bernoulli(ph_neg)
        n = v.shape[0]
        self._ascend({"W1": (v.T @ ph - pv.T @ ph_neg) / n, "b": (v - pv).mean(0), "c1": (ph - ph_neg).mean(0)})
        return {"recon_error": ((v - pv) ** 2).mean(), "phase": 0.0}

    def _pretrain_top(self, v: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """CD-k on the top RBM, data `h1 ~ p(h1 | v)` of the bottom one, its hidden input counted twice."""
        h1 = bernoulli(torch.sigmoid(2 * (v @ self.W1) + self.c1))
        ph2 = self.p_h2(h1)
        h2 = bernoulli(ph2)
        for _ in range(self.cd_k):
            ph1 = torch.sigmoid(2 * (h2 @ self.W2.T) + self.c1_top)
            ph2_neg = self.p_h2(ph1)
            h2 = bernoulli(ph2_neg)
        n = v.shape[0]
        grads = {"W2": (h1.T @ ph2 - ph1.T @ ph2_neg) / n, "c1_top": (h1 - ph1).mean(0), "c2": (ph2 - ph2_neg).mean(0)}
        self._ascend(grads)
        return {"recon_error": ((h1 - ph1) ** 2).mean(), "phase": 1.0}

    def _joint(self, v: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """Mean-field data term, persistent-chain model term (S&H 2009, Sec. 2.2)."""
        if self._steps_done() == self.pretrain_steps:  # first joint step: burn the chains in from noise
            self.chain_v.copy_(bernoulli(torch.full_like(self.chain_v, 0.5)))
            self.chain_h2.copy_(bernoulli(torch.full_like(self.chain_h2, 0.5)))
            for _ in range(100):
                v_c, _, h2_c = self.gibbs_step(self.chain_v, self.chain_h2)
                self.chain_v.copy_(v_c)
                self.chain_h2.copy_(h2_c)
        mu1, mu2 = self.mean_field(v, self.mf_steps)
        for _ in range(self.pcd_steps):
            v_c, h1_c, h2_c = self.gibbs_step(self.chain_v, self.chain_h2)
            self.chain_v.copy_(v_c)
            self.chain_h2.copy_(h2_c)
        # Model statistics with v and h2 Rao-Blackwellized given the sampled h1.
        pv_c, ph2_c = self.p_v(h1_c), self.p_h2(h1_c)
        n, m = v.shape[0], h1_c.shape[0]
        grads = {
            "W1": v.T @ mu1 / n - pv_c.T @ h1_c / m,
            "W2": mu1.T @ mu2 / n - h1_c.T @ ph2_c / m,
            "b": v.mean(0) - pv_c.mean(0),
            "c1": mu1.mean(0) - h1_c.mean(0),
            "c2": mu2.mean(0) - ph2_c.mean(0),
        }
        recon = ((v - self.p_v(mu1)) ** 2).mean()
        self._ascend(grads)
        return {"recon_error": recon, "phase": 2.0}

    @torch.no_grad()
    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """One update on a batch in [0, 1]: binarize stochastically, then the phase's update.

        Returns `recon_error` (squared error of the phase's one-step reconstruction: of `v` for the bottom RBM
        and the DBM, of `h1` for the top RBM), `phase` (0 bottom RBM, 1 top RBM, 2 joint) and
        `neg_free_energy_mf`.
        """
        v = binarize(x).flatten(1)  # (B, D)
        self._update_data_mean(v)
        step, half = self._steps_done(), self.pretrain_steps // 2
        if step < half:
            out = self._pretrain_bottom(v)
        elif step < self.pretrain_steps:
            out = self._pretrain_top(v)
        else:
            out = self._joint(v)
        self.num_steps += 1
        self._host_steps = step + 1
        # Same keys in every phase (the trainer's curve has one column each): the mean-field value of
        # E_q[-E] + H(q), the bound on log p(v) + log Z, which training drives up relative to log Z.
        out["neg_free_energy_mf"] = self.variational_bound(v, *self.mean_field(v, self.mf_steps)).mean()
        return out

    # ------------------------------------------------------------------ sampling and description

    def chain_steps(self, mode: str | None) -> int:
        """Gibbs sweeps of a mode: `gibbs<k>` runs k, `default` the constructor's `gibbs_steps`."""
        mode = self.check_mode(mode)
        return self.gibbs_steps if mode == "default" else int(mode.removeprefix("gibbs"))

    def network_evaluations(self, mode: str | None = None) -> int:
        """One Gibbs sweep (all three layers) per step of the chain."""
        return self.chain_steps(mode)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        mode: str | None = None,
        gibbs_steps: int | None = None,
    ) -> torch.Tensor:
        """Visible probabilities after a Gibbs chain of `gibbs_steps` sweeps from uniform noise, `(n, *shape)`.

        The mode `gibbs<k>` sets the chain length to `k`; `default` uses the constructor's `gibbs_steps`.
        """
        steps = gibbs_steps if gibbs_steps is not None else self.chain_steps(mode)
        dev = self.device
        v = bernoulli(torch.full((n, self.W1.shape[0]), 0.5, device=dev), generator)
        h2 = bernoulli(torch.full((n, self.W2.shape[1]), 0.5, device=dev), generator)
        h1 = self.p_h1(v, h2)
        for _ in range(steps):
            v, h1, h2 = self.gibbs_step(v, h2, generator)
        return self.p_v(h1).reshape(n, *self.spec.shape)

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            binarization="stochastic, p = x (training: fresh each step; test: one fixed binarization), L = 2",
            pretraining=(
                f"greedy: {self.pretrain_steps // 2} steps bottom RBM + "
                f"{self.pretrain_steps - self.pretrain_steps // 2} steps top RBM, CD-{self.cd_k}, doubled inputs"
            ),
            joint_training=f"mean-field ({self.mf_steps} iterations) + PCD ({self.chain_v.shape[0]} chains)",
            likelihood_method=f"mean-field bound ({self.eval_mf_steps} iterations) - AIS log Z",
            steps=int(self.num_steps),
        )
        return info
