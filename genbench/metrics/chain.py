"""Sample quality against Markov-chain length, for models that sample with a chain (GSN).

A GSN's samples are the states of its corrupt-reconstruct chain (Bengio et al. 2014, "Deep Generative
Stochastic Networks Trainable by Backprop"); how good they are depends on how long the chain has run. For a
model with `sample_chain(n, lengths, generator) -> {length: samples}` this family records one `fid` per
requested length, with the extra field `chain_length`, on the same features and reference statistics as
`genbench.metrics.fid` (it reuses that family's functions and the feature settings of the `fid` section, so
the numbers are comparable with the main FID). Models without `sample_chain` get nothing.

Eval config section `chain`: `enabled`, `lengths` (chain steps from noise), `n_gen` (chains; capped by
`fid.n_gen_cpu` on a CPU, like the main FID). It is FID, so `fid.enabled: false` turns it off as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genbench.data import Dataset
from genbench.metrics import features as feats
from genbench.metrics.fid import NO_UNIT, FidSetup, frechet_distance, statistics
from genbench.model import GenerativeModel
from genbench.results import Metric


def has_chain(model: GenerativeModel) -> bool:
    """True for models whose sampler is a Markov chain they can observe at several lengths."""
    return callable(getattr(model, "sample_chain", None))


@torch.no_grad()
def chain_features(
    model: GenerativeModel,
    n: int,
    lengths: list[int],
    extractor: feats.FeatureExtractor,
    batch_size: int,
    generator: torch.Generator | None,
) -> dict[int, np.ndarray]:
    """Features `(n, D)` of `n` chains' states after each length, chains run in batches of `batch_size`."""
    parts: dict[int, list[np.ndarray]] = {k: [] for k in lengths}
    for start in range(0, n, batch_size):
        states = model.sample_chain(min(batch_size, n - start), lengths, generator)
        for k in lengths:
            parts[k].append(feats.extract(extractor, states[k], batch_size, progress=False))
    return {k: np.concatenate(v) for k, v in parts.items()}


def evaluate(model: GenerativeModel, data: Dataset, cfg: Any, generator: torch.Generator | None) -> list[Metric]:
    """`fid` at each chain length of `cfg.chain.lengths` (extra field `chain_length`), for chain samplers only."""
    ccfg, fcfg = cfg.get("chain"), cfg.get("fid")
    if ccfg is None or fcfg is None or not has_chain(model):
        return []
    if not ccfg.get("enabled", True) or not fcfg.get("enabled", True):
        return []
    setup = FidSetup.build(fcfg, data, model.device, int(ccfg.get("n_gen", 500)))
    lengths = sorted({int(k) for k in ccfg.get("lengths", [1, 10, 100])})
    by_length = chain_features(model, setup.n_gen, lengths, setup.extractor, setup.batch_size, generator)
    metrics = []
    for k in lengths:
        mu, sigma = statistics(by_length[k])
        value = frechet_distance(mu, sigma, setup.ref.mu, setup.ref.sigma)
        extra = {**setup.common_fields(), "chain_length": k}
        metrics.append(Metric("fid", value, NO_UNIT, "estimate", None, setup.n_gen, "test", extra))
    return metrics
