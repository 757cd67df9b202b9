"""A metric family as a contributor would add one (README, "Adding a metric"): the mean pixel intensity of the
model's samples minus the test split's, per sampling mode. Registered by tests, never by the package."""

from __future__ import annotations

from genbench.metrics.context import EvalContext
from genbench.results import Metric


def evaluate(ctx: EvalContext) -> list[Metric]:
    section = ctx.cfg.get("brightness") or {}
    n = int(section.get("n", 32))
    truth = float(ctx.data.test.mean())
    return [
        Metric("brightness_gap", float(ctx.samples(n, mode).mean()) - truth, "-", "estimate", None, n, "test",
               {"mode": mode}, ("mode",))
        for mode in ctx.modes()
    ]  # fmt: skip
