"""The partition function of an energy-based model against the length of its AIS schedule, until it settles.

A deep Boltzmann machine's likelihood needs `log Z`, which no one can compute at useful sizes; AIS (Salakhutdinov
& Murray 2008) estimates it, and the estimate is only as good as its schedule. For models that expose
`estimate_log_partition(n_runs, n_betas, generator) -> (mean, stderr)`, this family records `log_partition` at
each number of intermediate distributions in `betas`, with the spread over `runs` independent runs, so a reader sees
whether the estimate (and with it the likelihood column) has settled.

For models that also expose `mean_field_gap(v, n_samples, generator) -> (bound, estimate)` (the DBM), it
records how loose the variational bound is: `mean_field_gap`, the mean over the test split (as the model is
scored on it, e.g. binarized) of an importance estimate of `log p*(v)` minus the mean-field bound, at each sample
count in `gap_samples`. `log Z` cancels in the difference, so no AIS error enters it; the estimate is a lower bound
on `log p*(v)` in expectation, so the gap is one too (`kind: lower_bound`), tightening as the samples grow.

Eval section `partition`: `enabled`, `betas`, `runs`, `gap_samples`.
"""

from __future__ import annotations

from genbench.metrics.context import EvalContext
from genbench.metrics.likelihood import mean_stderr
from genbench.metrics.likelihood_inputs import test_inputs
from genbench.results import Metric


def evaluate(ctx: EvalContext) -> list[Metric]:
    cfg = ctx.cfg.get("partition") or {}
    estimate = getattr(ctx.model, "estimate_log_partition", None)
    if not cfg.get("enabled", True) or not callable(estimate):
        return []
    runs, generator = int(cfg.get("runs", 10)), ctx.generator("partition")
    metrics = []
    for betas in sorted(int(b) for b in cfg.get("betas", [100, 1000])):
        mean, stderr = estimate(n_runs=runs, n_betas=betas, generator=generator)
        extra = {"ais_betas": betas, "ais_runs": runs}
        metrics.append(Metric("log_partition", mean, "nats", "estimate", stderr, runs, None, extra, ("ais_betas",)))
    return metrics + bound_gaps(ctx, cfg)


def bound_gaps(ctx: EvalContext, cfg: dict) -> list[Metric]:
    gap = getattr(ctx.model, "mean_field_gap", None)
    if not callable(gap):
        return []
    v, _, note = test_inputs(ctx.model, ctx.data, None)
    v, generator, metrics = v.flatten(1).to(ctx.model.device), ctx.generator("mean_field_gap"), []
    for k in sorted(int(k) for k in cfg.get("gap_samples", [1, 10, 100, 1000])):
        bound, estimate = gap(v, k, generator)
        mean, stderr = mean_stderr((estimate - bound).cpu().double())
        extra = {"samples": k, "method": "importance, h1 summed out, h2 from q", **note}
        metrics.append(
            Metric("mean_field_gap", mean, "nats", "lower_bound", stderr, len(v), "test", extra, ("samples",))
        )
    return metrics
