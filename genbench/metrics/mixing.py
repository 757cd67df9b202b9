"""How a Markov-chain sampler mixes between the data's classes: distinct classes one chain visits in N steps.

A sampler that needs a Markov chain (a GSN, Bengio et al. 2014; a DBM's Gibbs chain) is only as good as its chain
mixes: a chain that stays in one digit class for a thousand steps gives correlated samples however good each one
looks. For models that can be observed along one chain (`sample_chain(n, lengths, generator)`), this family runs
`chains` chains from noise, classifies the state every `stride` steps with the domain classifier, and records the
mean number of distinct classes visited within each of `steps` (and how often consecutive observed states change
class). Needs labelled images (the domain classifier); other models and data get nothing.

Eval section `mixing`: `enabled`, `chains`, `stride`, `steps`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genbench.metrics.context import EvalContext
from genbench.metrics.likelihood import mean_stderr
from genbench.model import GenerativeModel
from genbench.results import Metric


def chain_classes(
    model: GenerativeModel,
    classify: Callable[[torch.Tensor], torch.Tensor],
    chains: int,
    stride: int,
    horizon: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Predicted classes `(chains, horizon // stride)` of chain states at steps stride, 2 stride, ..., horizon."""
    lengths = list(range(stride, horizon + 1, stride))
    states = model.sample_chain(chains, lengths, generator)
    with torch.no_grad():
        labels = [classify(states[k].to(model.device).float()).argmax(1).cpu() for k in lengths]
    return torch.stack(labels, dim=1)


def observe_classes(ctx: EvalContext, chains: int, stride: int, horizon: int) -> torch.Tensor:
    """`chain_classes` of the context's model, by the domain classifier, with the context's `mixing` generator."""
    classify = ctx.extractor("domain").classify
    return chain_classes(ctx.model, classify, chains, stride, horizon, ctx.generator("mixing"))


def evaluate(ctx: EvalContext) -> list[Metric]:
    cfg = ctx.cfg.get("mixing") or {}
    model, data = ctx.model, ctx.data
    if not cfg.get("enabled", True) or not callable(getattr(model, "sample_chain", None)):
        return []
    if not data.spec.is_image or data.train_labels is None:
        return []
    stride, steps = int(cfg.get("stride", 10)), sorted(int(s) for s in cfg.get("steps", [10, 100, 1000]))
    labels = observe_classes(ctx, int(cfg.get("chains", 20)), stride, max(steps))
    metrics = []
    for horizon in steps:
        seen = labels[:, : max(horizon // stride, 1)]
        distinct = torch.tensor([len(set(row.tolist())) for row in seen], dtype=torch.float64)
        changes = (seen[:, 1:] != seen[:, :-1]).double().mean(1) if seen.shape[1] > 1 else torch.zeros(len(seen))
        mean, se = mean_stderr(distinct)
        extra = {"steps": horizon, "stride": stride, "chains": len(labels), "class_change_rate": float(changes.mean())}
        metrics.append(
            Metric("classes_visited", mean, "classes", "estimate", se, len(labels), "samples", extra, ("steps",))
        )
    return metrics
