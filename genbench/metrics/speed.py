"""Sampling speed: one protocol that times `model.sample(n)` for every model and every sampling mode.

The claim under test is the seed's: a GAN (Goodfellow et al. 2014) draws a batch in one network pass, while
autoregressive models (PixelRNN/PixelCNN, van den Oord et al. 2016; cached sampling as in Ramachandran et al.
2017, "Fast generation for convolutional autoregressive models") generate pixel by pixel. The timing protocol
follows common benchmark practice (warm-up, device synchronisation, CUDA events, median of repeats, as in
nanoGPT's bench.py and `torch.utils.benchmark`).

`evaluate` is the metric family the pipeline calls after training (eval config section `speed`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from genbench.data import Dataset
from genbench.model import GenerativeModel
from genbench.results import Metric, device_name


@dataclass
class Timing:
    """Wall times of one sampling call: the first call separately (it pays for any compilation), then repeats."""

    first_s: float
    times_s: list[float]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)


def _timed_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes; on CUDA between two recorded events, after synchronising."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)  # kernels are asynchronous: wait before reading the events
        return start.elapsed_time(end) / 1000.0
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def time_calls(
    fn: Callable[[], object],
    device: torch.device,
    repeats: int,
    warmup: int,
    budget_s: float | None = None,
    min_repeats: int = 1,
) -> Timing:
    """Time `fn`: one first call, `warmup` untimed calls, then up to `repeats` timed calls.

    Args:
        fn: the call to time (it must do all its work before returning, apart from CUDA kernels).
        device: where the work runs; CUDA is timed with events and synchronisation.
        repeats: number of timed calls wanted.
        warmup: untimed calls after the first one (caches, allocator, autotuning).
        budget_s: stop repeating once this many seconds of timed calls are spent, after `min_repeats`.
        min_repeats: timed calls made whatever the budget.

    Returns:
        The first call's time and the timed repeats.
    """
    first_s = _timed_call(fn, device)
    for _ in range(warmup):
        _timed_call(fn, device)
    times: list[float] = []
    while len(times) < max(repeats, 1):
        times.append(_timed_call(fn, device))
        if budget_s is not None and len(times) >= min_repeats and sum(times) > budget_s:
            break
    return Timing(first_s, times)


def environment(device: torch.device) -> dict[str, object]:
    """What every timing states about where it ran."""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def timing_metrics(timing: Timing, batch_size: int, extra: dict[str, object]) -> list[Metric]:
    """`sample_throughput` and `sample_latency` (DESIGN.md metric table) for one timed point."""
    common = {**extra, "batch_size": batch_size, "repeats": len(timing.times_s), "first_call_s": timing.first_s}
    n = len(timing.times_s)
    return [
        Metric("sample_throughput", batch_size / timing.median_s, "samples/s", "measured", n=n, extra=common),
        Metric(
            "sample_latency",
            timing.median_s,
            "s",
            "measured",
            n=n,
            extra={**common, "min_s": timing.min_s, "max_s": timing.max_s},
        ),
    ]


def evaluate(model: GenerativeModel, data: Dataset, cfg: DictConfig, generator: torch.Generator) -> list[Metric]:
    """The speed metric family: time `model.sample(cfg.speed.n)` in every sampling mode the model offers.

    Args:
        model: a model, on its device.
        data: unused (speed does not depend on data); kept for the metric-family signature.
        cfg: the eval config; reads `cfg.speed.enabled`, `n` (batch size), `repeats`, `warmup`.
        generator: the noise source handed to `sample`.

    Returns:
        Two metrics per sampling mode, fp32, eager.
    """
    sc = cfg.speed
    if not sc.enabled:
        return []
    device = model.device
    was_training = model.training
    model.eval()
    metrics: list[Metric] = []
    for mode in model.sampling_modes:

        def call(mode: str = mode) -> torch.Tensor:
            return model.sample(int(sc.n), generator=generator, mode=mode)

        with torch.inference_mode():
            timing = time_calls(call, device, repeats=int(sc.repeats), warmup=int(sc.get("warmup", 1)))
        extra = {**environment(device), "dtype": "fp32", "mode": mode, "compile": False}
        metrics += timing_metrics(timing, int(sc.n), extra)
    model.train(was_training)
    return metrics
