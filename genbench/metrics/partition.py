"""The partition function of an energy-based model against the length of its AIS schedule, until it settles.

A deep Boltzmann machine's likelihood needs `log Z`, which no one can compute at useful sizes; AIS (Salakhutdinov
& Murray 2008) estimates it, and the estimate is only as good as its schedule. For models that expose
`estimate_log_partition(n_runs, n_betas, generator) -> (mean, stderr)`, this family records `log_partition` at
each number of intermediate distributions in `betas`, with the spread over `runs` independent runs, so a reader sees
whether the estimate (and with it the likelihood column) has settled.

Eval section `partition`: `enabled`, `betas`, `runs`.
"""

from __future__ import annotations

from genbench.metrics.context import EvalContext
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
    return metrics
