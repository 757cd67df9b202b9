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
`genbench.metrics.precision_recall`), each with `features`, `n_gen`, `n_ref`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from genbench.data import Dataset
from genbench.metrics import features as feats
from genbench.metrics.kid import kid
from genbench.metrics.precision_recall import precision_recall
from genbench.model import GenerativeModel
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


@torch.no_grad()
def generated_features(
    model: GenerativeModel,
    n: int,
    extractor: feats.FeatureExtractor,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Features (n, D) of `n` model samples drawn in batches of `batch_size`."""
    out = []
    for start in tqdm(range(0, n, batch_size), desc=f"samples -> {extractor.name} features", leave=False, unit="batch"):
        x = model.sample(min(batch_size, n - start), generator=generator)
        out.append(feats.extract(extractor, x, batch_size, progress=False))  # the outer bar shows progress
    return np.concatenate(out)


# ----------------------------------------------------------------------------- the metric family


def _frechet_device(fcfg: Any, model_device: torch.device) -> torch.device | None:
    """`eval.fid.linalg_device`: auto = torch float64 on the GPU when the model is there, else numpy (None)."""
    choice = fcfg.get("linalg_device", "auto")
    if choice == "auto":
        return model_device if model_device.type == "cuda" else None
    return None if choice == "cpu" else torch.device(choice)


def _kid_metric(
    gen: np.ndarray, ref: np.ndarray, fcfg: Any, common: dict[str, Any], seed: int, device: torch.device
) -> Metric:
    n_subsets = int(fcfg.get("kid_subsets", 100))
    subset = min(int(fcfg.get("kid_subset_size", 1000)), len(gen), len(ref))
    mean, std = kid(gen, ref, n_subsets, subset, seed, device)
    extra = {**common, "subsets": n_subsets, "subset_size": subset}
    # stderr: the spread over subsets (Bińkowski et al. report mean ± std); subsets overlap, so std, not std/sqrt
    return Metric("kid", mean, NO_UNIT, "estimate", std, len(gen), "test", extra)


def _precision_recall_metrics(
    gen: np.ndarray, ref: np.ndarray, fcfg: Any, common: dict[str, Any], device: torch.device
) -> list[Metric]:
    # equal-sized sets: the k-NN radii shrink as a set grows, so unequal sizes would bias the comparison
    n = min(len(gen), len(ref), int(fcfg.get("pr_max", 10_000)))
    k = int(fcfg.get("pr_k", 3))
    p, r = precision_recall(ref[:n], gen[:n], k, int(fcfg.get("pr_chunk", 1024)), device)
    extra = {**common, "k": k, "n_gen": n, "n_ref": n}
    # no stderr: the n membership tests share one k-NN manifold, so they are not independent trials
    return [
        Metric("precision", p, "fraction", "estimate", None, n, "test", dict(extra)),
        Metric("recall", r, "fraction", "estimate", None, n, "test", dict(extra)),
    ]


@dataclass
class FidSetup:
    """What every FID-like number of one evaluation shares: features, reference statistics, sample count."""

    features: str
    extractor: feats.FeatureExtractor
    ref: ReferenceStats
    n_ref: int
    n_gen: int
    batch_size: int

    @classmethod
    def build(cls, fcfg: Any, data: Dataset, device: torch.device, n_gen: int) -> FidSetup:
        name = feats.resolve_features(fcfg.get("features", "auto"), data)
        extractor = feats.build_extractor(name, data, fcfg, device)
        n_ref = min(int(fcfg.get("n_ref") or len(data.test)), len(data.test))
        batch_size = int(fcfg.get("batch_size", 256))
        ref = reference_statistics(
            data.test[:n_ref], extractor, f"{data.spec.name}-test-{name}", batch_size, fcfg.get("cache_dir")
        )
        if device.type == "cpu" and fcfg.get("n_gen_cpu"):
            n_gen = min(n_gen, int(fcfg.n_gen_cpu))  # slow samplers (autoregressive) on a CPU: a smaller protocol
        return cls(name, extractor, ref, n_ref, n_gen, batch_size)

    def common_fields(self) -> dict[str, Any]:
        return {"features": self.features, "n_gen": self.n_gen, "n_ref": self.n_ref, **self.extractor.extra}


def evaluate(model: GenerativeModel, data: Dataset, cfg: Any, generator: torch.Generator | None) -> list[Metric]:
    """FID, KID, precision and recall of `model`'s samples against the test split (eval section `fid`).

    Keys of `cfg.fid` (conf/eval/*.yaml documents each): enabled, features (auto|inception|domain|raw), n_gen,
    n_gen_cpu, n_ref, batch_size, kid_subsets, kid_subset_size, pr_k, pr_chunk, pr_max, linalg_device,
    weights_path, download, cache_dir, domain (classifier settings).
    """
    fcfg = cfg.get("fid")
    if fcfg is None or not fcfg.get("enabled", True):
        return []
    device = model.device
    setup = FidSetup.build(fcfg, data, device, int(fcfg.get("n_gen", 2000)))
    extractor, ref, n_gen, batch_size = setup.extractor, setup.ref, setup.n_gen, setup.batch_size
    gen = generated_features(model, n_gen, extractor, batch_size, generator)
    mu, sigma = statistics(gen)
    common = setup.common_fields()
    fid = frechet_distance(mu, sigma, ref.mu, ref.sigma, device=_frechet_device(fcfg, device))
    metrics = [Metric("fid", fid, NO_UNIT, "estimate", None, n_gen, "test", dict(common))]

    kernel_device = device if device.type == "cuda" else torch.device("cpu")  # kernels and distances: GPU if there
    metrics.append(_kid_metric(gen, ref.features, fcfg, common, int(cfg.get("seed", 0)), kernel_device))
    metrics += _precision_recall_metrics(gen, ref.features, fcfg, common, kernel_device)
    return metrics
