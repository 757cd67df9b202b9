"""Sample quality over training, from the weights a run kept at its checkpoints (`train.keep_snapshots=true`).

Whether GAN training converges (Goodfellow 2016, the NIPS tutorial, section 3) is a question about the path, not
the end point: FID against training step, for images, and on the toy mixtures, whose density is known, the modes
covered, the high-quality fraction (genbench.metrics.mixture) and the KL to the truth against training step. A run
without snapshots gets nothing. Each snapshot is scored on a fresh evaluation context (its own samples) with the
same seeds, so the curves move only because the weights do.

Eval section `progress`: `enabled`, `n_gen` (samples per snapshot for FID; the toy metrics use the `mixture` and
`likelihood.kl_to_truth` sizes).
"""

from __future__ import annotations

import copy

import torch

from genbench.metrics import fid, mixture
from genbench.metrics.context import EvalContext
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.likelihood import kl_to_truth_metrics
from genbench.results import Metric
from genbench.train import snapshots


def snapshot_metrics(ctx: EvalContext, step: int) -> list[Metric]:
    """The progress metrics of the model as it is now (loaded with the snapshot of `step`)."""
    cfg, data = ctx.cfg.progress, ctx.data
    fields = {"step": step, "mode": ctx.default_mode}
    if mixture.has_components(data.density):
        mcfg = ctx.cfg.get("mixture") or {}
        points = ctx.samples(int(mcfg.get("n_samples", 2500)))
        found = mixture.coverage_metrics(points, data.density, int(mcfg.get("min_per_mode", 20)), fields)
        found += kl_to_truth_metrics(
            ctx.model, data, ctx.cfg.likelihood, ctx.generator("kl_to_truth"), lambda n: ctx.samples(n).flatten(1)
        )
        for m in found:
            m.name += "_over_training"
            m.extra |= fields
            m.variant = ("step", *m.variant)
        return found
    if not data.spec.is_image or ctx.cfg.get("fid") is None:
        return []
    n = min(int(cfg.get("n_gen", 500)), len(data.test))
    ref = fid.reference(ctx)
    value = frechet_distance_features(ctx.sample_features(n), ref.features, moments2=(ref.mu, ref.sigma))
    extra = {**fields, "features": ctx.feature_set, "n_gen": n, "n_ref": ref.n}
    return [Metric("fid_over_training", value, "–", "estimate", None, n, "test", extra, ("step", "features"))]


def evaluate(ctx: EvalContext) -> list[Metric]:
    """The progress metrics at every kept snapshot of the run (none without snapshots)."""
    cfg = ctx.cfg.get("progress")
    if cfg is None or not cfg.get("enabled", True) or ctx.run_dir is None:
        return []
    kept = snapshots(ctx.run_dir)
    if not kept:
        return []
    final = copy.deepcopy(ctx.model.state_dict())
    found: list[Metric] = []
    try:
        for step, path in kept:
            state = torch.load(path, map_location=ctx.model.device, weights_only=True)
            ctx.model.load_state_dict(state["model_state"])
            found += snapshot_metrics(EvalContext(ctx.model, ctx.data, ctx.cfg), step)
    finally:
        ctx.model.load_state_dict(final)
        ctx.model.eval()
    return found
