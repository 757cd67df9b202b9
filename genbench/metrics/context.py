"""The evaluation context: what every metric family of one evaluation shares, computed once.

One `EvalContext` serves one evaluation of one trained model. It draws each sampling mode's samples once (a
pixel-by-pixel sampler pays for them once, however many families use them), builds each feature extractor once
and caches the features of every sample pool, and hands out random generators, one per purpose, so that adding a
metric family never changes another family's numbers.

Samples are a pure function of (eval seed, mode, chunk index): pool chunk `i` of mode `m` is drawn by a
generator seeded from `(seed, m, i)`. Asking for 500 samples and later for 2,000 gives the same first 500 as
asking for 2,000 at once, whatever order the families run in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genbench.data import Dataset
from genbench.metrics import features as feats
from genbench.model import GenerativeModel

DEFAULT_SAMPLE_BATCH = 256


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and Python versions (not `hash()`)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class EvalContext:
    """Samples, features and generators shared by the metric families of one evaluation.

    Args:
        model: the trained model, on its device (put in eval mode here).
        data: its dataset.
        cfg: the eval config (`conf/eval/*.yaml`): `seed`, `sample_batch`, and the `features` section.
        run_dir: the run's directory, for families that read what training left there (snapshots); None when
            a model is evaluated outside a run.
    """

    def __init__(self, model: GenerativeModel, data: Dataset, cfg: Any, run_dir: Path | None = None) -> None:
        self.model, self.data, self.cfg, self.run_dir = model, data, cfg, run_dir
        self.seed = int(cfg.get("seed", 0))
        self.sample_batch = int(cfg.get("sample_batch") or DEFAULT_SAMPLE_BATCH)
        self.features_cfg = cfg.get("features") or {}
        self._pools: dict[str, torch.Tensor] = {}
        self._extractors: dict[str, feats.FeatureExtractor] = {}
        self._pool_features: dict[tuple[str, str], np.ndarray] = {}
        model.eval()

    # ------------------------------------------------------------------ randomness

    def generator(self, purpose: str) -> torch.Generator:
        """A fresh CPU generator for one purpose (`"likelihood"`, `"ais"`, ...), seeded from the eval seed."""
        return torch.Generator().manual_seed(derived_seed(self.seed, purpose))

    # ------------------------------------------------------------------ samples

    @property
    def default_mode(self) -> str:
        return self.model.sampling_modes[0]

    def modes(self) -> list[str]:
        """The modes whose samples differ in distribution: all of them where the mode changes the samples
        (chain lengths, diffusion step counts), else only the default (cached and naive PixelCNN agree)."""
        return list(self.model.sampling_modes) if self.model.mode_changes_samples else [self.default_mode]

    def samples(self, n: int, mode: str | None = None) -> torch.Tensor:
        """The first `n` samples of `mode`'s pool, `(n, *shape)` on the CPU; the pool grows as needed."""
        mode = self.model.check_mode(mode)
        pool = self._pools.get(mode)
        have = 0 if pool is None else len(pool)
        if have < n:
            chunks = range(have // self.sample_batch, -(-n // self.sample_batch))
            parts = [] if pool is None else [pool]  # a pool always holds whole chunks
            with torch.no_grad():
                for i in tqdm(chunks, desc=f"samples ({mode})", leave=False, unit="batch", disable=len(chunks) < 2):
                    gen = torch.Generator().manual_seed(derived_seed(self.seed, "samples", mode, i))
                    parts.append(self.model.sample(self.sample_batch, generator=gen, mode=mode).detach().cpu())
            pool = self._pools[mode] = torch.cat(parts)
        return pool[:n]

    # ------------------------------------------------------------------ features

    @property
    def feature_set(self) -> str:
        """The feature set of this evaluation (`eval.features.name`, `auto` resolved for the data)."""
        return feats.resolve_features(self.features_cfg.get("name", "auto"), self.data)

    def extractor(self, name: str | None = None) -> feats.FeatureExtractor:
        """The feature extractor `name` (default: this evaluation's), built once, on the model's device."""
        name = name or self.feature_set
        if name not in self._extractors:
            self._extractors[name] = feats.build_extractor(name, self.data, self.features_cfg, self.model.device)
        return self._extractors[name]

    def sample_features(self, n: int, mode: str | None = None, name: str | None = None) -> np.ndarray:
        """Features `(n, D)` of the first `n` samples of `mode`, computed once per pool and feature set."""
        mode, name = self.model.check_mode(mode), name or self.feature_set
        key = (name, mode)
        have = self._pool_features.get(key)
        if have is None or len(have) < n:
            x = self.samples(n, mode)
            start = 0 if have is None else len(have)
            batch = int(self.features_cfg.get("batch_size", DEFAULT_SAMPLE_BATCH))
            new = feats.extract(self.extractor(name), x[start:], batch, desc=f"{name} features ({mode})")
            self._pool_features[key] = new if have is None else np.concatenate([have, new])
        return self._pool_features[key][:n]
