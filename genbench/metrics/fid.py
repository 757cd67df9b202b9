"""Sample quality: the Fréchet distance (FID), plus KID and precision/recall on the same features.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium")
fits a Gaussian to the features of generated and of reference samples and reports the squared Fréchet (2-
Wasserstein) distance between them (Dowson & Landau 1982); the exact maths lives in `genbench.metrics.frechet`
(`frechet_distance`, `frechet_distance_features`, `statistics`, `fid_bootstrap`).

`evaluate` is the metric family the pipeline calls (eval config section `fid`): it writes `fid`, `kid`
(Bińkowski et al. 2018, `genbench.metrics.kid`) and `precision`/`recall` (Kynkäänniemi et al. 2019,
`genbench.metrics.precision_recall`), each with `features`, `mode`, `source` (model or data), `n_gen`, `n_ref`:
per sampling mode where the mode changes the samples (a chain's length, a diffusion's step count), and for real
examples outside the reference, scored exactly like the samples (the floor a perfect model would reach).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genbench.data import Dataset
from genbench.metrics import features as feats
from genbench.metrics.context import EvalContext
from genbench.metrics.frechet import fid_bootstrap, frechet_distance_features, statistics
from genbench.metrics.kid import kid_estimate
from genbench.metrics.precision_recall import precision_recall
from genbench.results import Metric, atomic_write

NO_UNIT = "–"  # DESIGN.md's metric table: FID and KID carry no unit

# ----------------------------------------------------------------------------- reference statistics, cached


@dataclass
class ReferenceStats:
    """Mean, covariance and the features themselves (KID and precision/recall need them) of a reference set."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    key: str

    @property
    def n(self) -> int:
        return len(self.features)


def reference_statistics(
    x: torch.Tensor,
    extractor: feats.FeatureExtractor,
    label: str,
    batch_size: int = 256,
    cache_dir: str | None = None,
) -> ReferenceStats:
    """Statistics of the reference examples `x`, computed once and cached under a hash of data and features.

    Args:
        x: reference examples (N, *shape) in data space, e.g. a dataset's test split.
        extractor: the feature map; its `key` is part of the hash, so other features recompute.
        label: readable part of the file name, e.g. "digits-test-domain".
        batch_size: examples per feature batch.
        cache_dir: cache folder (default `<data root>/cache`); files go to its `fid_stats/`.
    """
    key = hashlib.sha256((feats.tensor_digest(x) + extractor.key).encode()).hexdigest()[:16]
    path = feats.cache_root(cache_dir) / "fid_stats" / f"{label}-{key}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return ReferenceStats(saved["mu"], saved["sigma"], saved["features"], key)
    features = feats.extract(extractor, x, batch_size, desc=f"reference features ({label})")
    mu, sigma = statistics(features)
    atomic_write(path, lambda tmp: np.savez(tmp, mu=mu, sigma=sigma, features=features))
    return ReferenceStats(mu, sigma, features, key)


# ----------------------------------------------------------------------------- the metric family

QUALITY_VARIANT = ("features", "mode", "source")  # one number per feature set, sampling mode, and model vs data


def _frechet_device(fcfg: Any, model_device: torch.device) -> torch.device | None:
    """`eval.fid.linalg_device`: auto = torch float64 on the GPU when the model is there, else numpy (None)."""
    choice = fcfg.get("linalg_device", "auto")
    if choice == "auto":
        return model_device if model_device.type == "cuda" else None
    return None if choice == "cpu" else torch.device(choice)


def real_pool(data: Dataset) -> torch.Tensor:
    """Real examples that are not in the reference (the test split): validation first, then training rows.

    They are independent draws from the data distribution, so scored against the reference exactly like a
    model's samples they give the floor a perfect model would reach at the same sample size.
    """
    parts = [t for t in (getattr(data, "valid", None), data.train) if t is not None and len(t)]
    return torch.cat(parts) if parts else data.train


def reference(ctx: EvalContext) -> ReferenceStats:
    """Statistics of the (first `n_ref`) test examples on the context's features, cached on disk."""
    fcfg, data, name = ctx.cfg.fid, ctx.data, ctx.feature_set
    n_ref = min(int(fcfg.get("n_ref") or len(data.test)), len(data.test))
    batch = int(ctx.features_cfg.get("batch_size", 256))
    label = f"{data.spec.name}-test-{name}"
    return reference_statistics(data.test[:n_ref], ctx.extractor(), label, batch, ctx.features_cfg.get("cache_dir"))


def sample_size(ctx: EvalContext, n_real: int) -> tuple[int, dict[str, Any]]:
    """The number of generated samples every mode and the real-data floor are scored on, and why.

    `fid.n_gen`, capped by `fid.n_gen_cpu` when the model is on a CPU (pixel-by-pixel samplers), and by the number
    of real examples outside the reference, so that the floor is measured at the same size as the models
    (FID is biased by the sample size: numbers at different sizes do not compare).
    """
    fcfg = ctx.cfg.fid
    asked = int(fcfg.get("n_gen", 2000))
    n, capped_by = asked, None
    if ctx.model.device.type == "cpu" and fcfg.get("n_gen_cpu") and int(fcfg.n_gen_cpu) < n:
        n, capped_by = int(fcfg.n_gen_cpu), "n_gen_cpu"
    if fcfg.get("real_data_floor", True) and n_real < n:
        n, capped_by = n_real, "real examples outside the reference"
    return n, {"n_gen_requested": asked, "n_gen_capped_by": capped_by}


def quality_metrics(
    gen: np.ndarray, ref: ReferenceStats, fcfg: Any, fields: dict[str, Any], seed: int, device: torch.device
) -> list[Metric]:
    """FID, KID, precision and recall of features `gen` against the reference, all carrying `fields`."""
    n = len(gen)
    linalg = _frechet_device(fcfg, device)
    value = frechet_distance_features(gen, ref.features, device=linalg, moments2=(ref.mu, ref.sigma))
    common = {**fields, "n_gen": n, "n_ref": ref.n}
    fid_fields = dict(common)
    resamples = int(fcfg.get("bootstrap", 0))
    if resamples >= 2:  # the FID's sampling uncertainty: resample both sides (its bias is not in the interval)
        boot = fid_bootstrap(gen, ref.features, resamples, seed, float(fcfg.get("bootstrap_level", 0.95)))
        fid_fields.update(interval=[boot.low, boot.high], interval_level=boot.level, bootstrap_resamples=resamples)
    metrics = [Metric("fid", value, NO_UNIT, "estimate", None, n, "test", fid_fields, QUALITY_VARIANT)]

    kernel_device = device if device.type == "cuda" else torch.device("cpu")  # kernels and distances: GPU if there
    asked, subsets = int(fcfg.get("kid_subset_size", 1000)), int(fcfg.get("kid_subsets", 100))
    precision = str(fcfg.get("kid_precision", "float64"))
    result = kid_estimate(gen, ref.features, subsets, asked, seed, kernel_device, precision)
    kid_fields = {**common, "subsets": subsets, "subset_size": result.subset_size, "subset_size_requested": asked}
    kid_fields["kernel_precision"] = precision
    # stderr: the spread over subsets (Bińkowski et al. report mean ± std); subsets overlap, so std, not std/sqrt
    metrics.append(Metric("kid", result.mean, NO_UNIT, "estimate", result.std, n, "test", kid_fields, QUALITY_VARIANT))

    # equal-sized sets: the k-NN radii shrink as a set grows, so unequal sizes would bias the comparison
    m = min(n, ref.n, int(fcfg.get("pr_max", 10_000)))
    k = int(fcfg.get("pr_k", 3))
    p, r = precision_recall(ref.features[:m], gen[:m], k, int(fcfg.get("pr_chunk", 1024)), kernel_device)
    pr_fields = {**common, "k": k, "n_gen": m, "n_ref": m}
    # no stderr: the n membership tests share one k-NN manifold, so they are not independent trials
    for name, value in (("precision", p), ("recall", r)):
        metrics.append(Metric(name, value, "fraction", "estimate", None, m, "test", dict(pr_fields), QUALITY_VARIANT))
    return metrics


def evaluate(ctx: EvalContext) -> list[Metric]:
    """FID, KID, precision and recall against the test split (eval section `fid`), for every sampling mode whose
    samples differ (`fid.modes: all`) or the default one, and for real examples outside the reference (the floor).

    Keys of `ctx.cfg.fid` (conf/eval/default.yaml documents each): enabled, modes (default|all), n_gen, n_gen_cpu,
    n_ref, real_data_floor, kid_subsets, kid_subset_size, kid_precision, pr_k, pr_chunk, pr_max, linalg_device.
    The feature set and its settings are the `features` section, shared with every family that needs features.
    """
    fcfg = ctx.cfg.get("fid")
    if fcfg is None or not fcfg.get("enabled", True):
        return []
    ref, real = reference(ctx), real_pool(ctx.data)
    n, size_fields = sample_size(ctx, len(real))
    common = {"features": ctx.feature_set, **ctx.extractor().extra, **size_fields}
    seed, device = int(ctx.cfg.get("seed", 0)), ctx.model.device
    modes = ctx.modes() if fcfg.get("modes", "default") == "all" else [ctx.default_mode]
    metrics = []
    for mode in modes:
        fields = {**common, "mode": mode, "source": "model"}
        metrics += quality_metrics(ctx.sample_features(n, mode), ref, fcfg, fields, seed, device)
    if fcfg.get("real_data_floor", True):
        idx = torch.randperm(len(real), generator=ctx.generator("real data floor"))[:n]
        batch = int(ctx.features_cfg.get("batch_size", 256))
        real_features = feats.extract(ctx.extractor(), real[idx], batch, desc="real-data floor features")
        fields = {**common, "mode": None, "source": "data"}
        metrics += quality_metrics(real_features, ref, fcfg, fields, seed, device)
    return metrics
