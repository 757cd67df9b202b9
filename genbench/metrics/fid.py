"""Sample quality: the Fréchet distance (FID), plus KID and precision/recall on the same features.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium")
fits a Gaussian to the features of generated and of reference samples and reports the squared Fréchet (2-
Wasserstein) distance between them (Dowson & Landau 1982); the exact maths lives in `genbench.metrics.frechet`
(re-exported here: `frechet_distance`, `frechet_distance_features`, `statistics`, `fid_bootstrap`).

`evaluate` is the metric family the pipeline calls (eval config section `fid`): it writes `fid`, `kid`
(Bińkowski et al. 2018, `genbench.metrics.kid`) and `precision`/`recall` (Kynkäänniemi et al. 2019,
`genbench.metrics.precision_recall`), each with `features`, `n_gen`, `n_ref`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genbench.data import Dataset
from genbench.metrics import features as feats
from genbench.metrics.frechet import (  # noqa: F401  (re-exported: the pure cores' historic home)
    FidBootstrap,
    _trace_sqrt_product_numpy,
    _trace_sqrt_product_torch,
    fid_bootstrap,
    frechet_distance,
    frechet_distance_features,
    statistics,
)
from genbench.metrics.kid import kid
from genbench.metrics.precision_recall import precision_recall
from genbench.model import GenerativeModel
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
