"""Classes one Markov chain visits (genbench/metrics/mixing.py), on a chain whose class path is known."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from genbench.datasets import load_dataset
from genbench.metrics import mixing
from genbench.metrics.context import EvalContext
from genbench.metrics.features import FeatureExtractor
from genbench.model import GenerativeModel


class StepChain(GenerativeModel):
    """Chain i shows class (i + step // period) % 10 (encoded as the image's brightness): a known mixing path."""

    mode_changes_samples = True

    def __init__(self, spec, period: int) -> None:
        super().__init__(spec)
        self.period = period
        self.w = torch.nn.Parameter(torch.zeros(()))

    def sample_chain(self, n: int, lengths: list[int], generator=None) -> dict[int, torch.Tensor]:
        chains = torch.arange(n)
        return {k: ((chains + k // self.period) % 10).float().view(n, 1, 1, 1).expand(n, *self.spec.shape) / 10
                for k in lengths}  # fmt: skip


def test_classes_visited_counts_the_distinct_classes_along_each_chain() -> None:
    data = load_dataset("digits")
    model = StepChain(data.spec, period=50)
    cfg = OmegaConf.create({"seed": 0, "mixing": {"chains": 4, "stride": 10, "steps": [10, 100, 1000]}})
    ctx = EvalContext(model, data, cfg)
    decode = lambda x: torch.nn.functional.one_hot((x.mean((1, 2, 3)) * 10).round().long() % 10, 10).float()  # noqa: E731
    ctx._extractors["domain"] = FeatureExtractor("domain", "stub", lambda x: x.flatten(1), classify=decode)
    by_steps = {m.extra["steps"]: m for m in mixing.evaluate(ctx)}
    # observed at steps 10, 20, ...: the class changes every 50 steps, so within 100 steps 3 classes
    # (steps 10-40, 50-90, 100), within 1000 all 10; within 10 steps one
    assert {k: m.value for k, m in by_steps.items()} == {10: 1.0, 100: 3.0, 1000: 10.0}
    assert by_steps[1000].extra["class_change_rate"] == 20 / 99  # a change at 50, 100, ..., 1000: 20 in 99 pairs
    assert by_steps[1000].n == 4 and by_steps[100].stderr == 0.0


def test_models_without_an_observable_chain_get_nothing() -> None:
    data = load_dataset("digits")

    class OnePass(GenerativeModel):
        def __init__(self, spec) -> None:
            super().__init__(spec)
            self.w = torch.nn.Parameter(torch.zeros(()))

    assert mixing.evaluate(EvalContext(OnePass(data.spec), data, OmegaConf.create({"seed": 0}))) == []
