"""Sample quality: the Fréchet distance (FID), plus KID and precision/recall on the same features.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium")
fits a Gaussian to the features of generated and of reference samples and reports the squared Fréchet (2-
Wasserstein) distance between them (Dowson & Landau 1982):

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2).

pytorch-fid computes `sqrtm(S1 @ S2)` of the non-symmetric product (a complex Schur decomposition). We only
need the trace of the square root, i.e. the sum of square roots of the eigenvalues of `S1 S2`, which are those
of the symmetric PSD matrix `L^T S2 L` for any `S1 = L L^T` (Cholesky), so one Cholesky, two triangular
products and one symmetric eigenvalue solve give the exact value, an order of magnitude faster. When `S1` (and
`S2`) are singular, `L = V sqrt(W)` from `S1`'s eigendecomposition plays the same role.

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
import scipy.linalg
import torch

from genbench.data import Dataset
from genbench.metrics import features as feats
from genbench.metrics.context import EvalContext
from genbench.metrics.kid import kid
from genbench.metrics.precision_recall import precision_recall
from genbench.results import Metric, atomic_write

NO_UNIT = "–"  # DESIGN.md's metric table: FID and KID carry no unit

# ----------------------------------------------------------------------------- the Fréchet distance


def _trace_sqrt_product_numpy(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2) for symmetric PSD float64 matrices via a factor `S1 = L L^T`."""
    try:
        lower = scipy.linalg.cholesky(sigma1, lower=True, check_finite=False)  # Fortran-ordered
        # M = L^T (S2 L) with two triangular products (BLAS trmm: half the flops of general matmuls). S2 is
        # symmetric, so its transpose is the same matrix already in Fortran order: BLAS reads it without a copy.
        s2l = scipy.linalg.blas.dtrmm(1.0, lower, sigma2.T, side=1, lower=1)  # S2 @ L
        m = scipy.linalg.blas.dtrmm(1.0, lower, s2l, side=0, lower=1, trans_a=1, overwrite_b=1)  # L^T @ (S2 L)
    except np.linalg.LinAlgError:
        # singular S1: L = V sqrt(W) (clipping round-off negatives) is a factor just as good
        w, v = np.linalg.eigh(sigma1)
        factor = v * np.sqrt(np.clip(w, 0.0, None))  # (D, D), columns scaled
        m = factor.T @ sigma2 @ factor
    # M is symmetric up to round-off; the solver reads its lower triangle only
    eig = scipy.linalg.eigvalsh(m, lower=True, overwrite_a=True, check_finite=False)
    # eigenvalues that are zero in exact arithmetic come out as +-eps * |M|; their square roots (1e-8 each) would
    # add up, so values under the usual rank tolerance count as zero (as in numpy's matrix_rank)
    tol = max(float(eig.max()), 0.0) * len(eig) * np.finfo(np.float64).eps
    return float(np.sqrt(eig[eig > tol]).sum())


def _trace_sqrt_product_torch(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """The same in torch float64, on whichever device the matrices live (the GPU path)."""
    lower, info = torch.linalg.cholesky_ex(sigma1)
    if int(info) != 0:
        w, v = torch.linalg.eigh(sigma1)
        lower = v * w.clamp_min(0).sqrt()
    m = lower.T @ sigma2 @ lower
    eig = torch.linalg.eigvalsh((m + m.T) / 2)
    tol = max(float(eig.max()), 0.0) * len(eig) * torch.finfo(torch.float64).eps  # as in the numpy route
    return float(eig[eig > tol].sqrt().sum())


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    device: str | torch.device | None = None,
) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), exact, in float64.

    Args:
        mu1, mu2: means, shape (D,).
        sigma1, sigma2: covariances, shape (D, D), symmetric PSD (singular is fine).
        device: None computes with numpy/LAPACK on the CPU; a torch device (e.g. "cuda") uses torch float64.

    Returns:
        The distance (what pytorch-fid's `calculate_frechet_distance` returns), a python float.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    if device is None:
        tr_sqrt = _trace_sqrt_product_numpy(sigma1, sigma2)
    else:
        s1, s2 = (torch.from_numpy(s).to(device, torch.float64) for s in (sigma1, sigma2))
        tr_sqrt = _trace_sqrt_product_torch(s1, s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), both float64 (as pytorch-fid's np.cov)."""
    x = np.asarray(features, np.float64)
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


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
    mu, sigma = statistics(gen)
    value = frechet_distance(mu, sigma, ref.mu, ref.sigma, device=_frechet_device(fcfg, device))
    common = {**fields, "n_gen": n, "n_ref": ref.n}
    metrics = [Metric("fid", value, NO_UNIT, "estimate", None, n, "test", dict(common), QUALITY_VARIANT)]

    kernel_device = device if device.type == "cuda" else torch.device("cpu")  # kernels and distances: GPU if there
    asked = int(fcfg.get("kid_subset_size", 1000))
    subsets, subset = int(fcfg.get("kid_subsets", 100)), min(asked, n, ref.n)
    mean, std = kid(gen, ref.features, subsets, subset, seed, kernel_device)
    kid_fields = {**common, "subsets": subsets, "subset_size": subset, "subset_size_requested": asked}
    # stderr: the spread over subsets (Bińkowski et al. report mean ± std); subsets overlap, so std, not std/sqrt
    metrics.append(Metric("kid", mean, NO_UNIT, "estimate", std, n, "test", kid_fields, QUALITY_VARIANT))

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
    n_ref, real_data_floor, kid_subsets, kid_subset_size, pr_k, pr_chunk, pr_max, linalg_device. The feature set
    and its settings are the `features` section, shared with every family that needs features.
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
