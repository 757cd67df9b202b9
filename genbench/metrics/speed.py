"""Sampling speed: one protocol that times `model.sample(n)` for every model and every sampling mode.

The claim under test is the seed's: a GAN (Goodfellow et al. 2014) draws a batch in one network pass, while
autoregressive models (PixelRNN/PixelCNN, van den Oord et al. 2016; cached sampling as in Ramachandran et al.
2017, "Fast generation for convolutional autoregressive models") generate pixel by pixel. The timing protocol
follows common benchmark practice (warm-up, device synchronisation, CUDA events, median of repeats, as in
nanoGPT's bench.py and `torch.utils.benchmark`).

`evaluate` is the metric family the pipeline calls after training (eval config section `speed`); `sweep` is what
`genbench speed` (`genbench.speed`) runs: sampling modes x dtypes x batch sizes, until memory runs out. Layers:
`speed_timing` measures one call (time, memory, FLOPs), this module runs points and sweeps on models,
`genbench.speed` writes the records and `speed_report` turns a folder of them into tables, a plot and ratios.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.metrics.speed_timing import (
    Timing,
    count_flops,
    environment,
    is_out_of_memory,
    peak_flops,
    peak_memory,
    time_calls,
)
from genbench.model import GenerativeModel, device_generator
from genbench.results import Metric, device_name

if TYPE_CHECKING:  # omegaconf only for the type: benchmarks/gpu_bench.py runs this module without it
    from omegaconf import DictConfig


log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
METRIC_EXTRA_KEYS = (
    "device", "torch", "threads", "batch_size", "dtype", "mode", "compile", "weights", "repeats", "load_avg_1m",
    "network_evaluations",
)  # fmt: skip
# A timing is told apart by where and how it was taken; the load and the repeats describe it.
SPEED_VARIANT = ("device", "batch_size", "dtype", "mode", "compile")
SampleFn = Callable[..., torch.Tensor]


# --------------------------------------------------------------------------------------------------------------
# One point: exactly `model.sample(n)` in one mode, dtype and batch size; its record metrics.


def sampler(
    model: GenerativeModel,
    n: int,
    mode: str,
    dtype: str,
    generator: torch.Generator | None,
    sample: SampleFn | None = None,
) -> Callable[[], torch.Tensor]:
    """The timed call: exactly `model.sample(n)` (or `sample`, its compiled form), under autocast for bf16/fp16."""
    device_type = model.device.type
    sample = sample or model.sample

    def call() -> torch.Tensor:
        ctx = torch.autocast(device_type, dtype=DTYPES[dtype]) if dtype != "fp32" else contextlib.nullcontext()
        with ctx:
            return sample(n, generator=generator, mode=mode)

    return call


def autocast_supported(device: torch.device, dtype: str) -> bool:
    """Whether torch has autocast to `dtype` on the device's type (fp32 needs none)."""
    return dtype == "fp32" or torch.amp.is_autocast_available(device.type)


def timing_fields(timing: Timing, batch_size: int) -> dict[str, Any]:
    return {
        "batch_size": batch_size,
        "throughput": batch_size / timing.median_s,
        "latency_median_s": timing.median_s,
        "latency_min_s": timing.min_s,
        "latency_max_s": timing.max_s,
        "first_call_s": timing.first_s,
        "repeats": len(timing.times_s),
        "warmup": timing.warmup,
        "cpu_time_median_s": statistics.median(timing.cpu_times_s),
    }


def load_average() -> float | None:
    """The 1-minute load average: other processes on the host slow wall times down, this says how busy it was."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def point_metrics(point: dict[str, Any]) -> list[Metric]:
    """`sample_throughput` and `sample_latency` (DESIGN.md metric table) of one measured point."""
    extra = {k: point[k] for k in METRIC_EXTRA_KEYS if k in point}
    extra["first_call_s"] = point["first_call_s"]
    variant = tuple(f for f in SPEED_VARIANT if f in extra)
    n = point["repeats"]
    latency_extra = {**extra, "min_s": point["latency_min_s"], "max_s": point["latency_max_s"]}
    return [
        Metric("sample_throughput", point["throughput"], "samples/s", "measured", n=n, extra=extra, variant=variant),
        Metric("sample_latency", point["latency_median_s"], "s", "measured", n=n, extra=latency_extra, variant=variant),
    ]


def evaluate(ctx: EvalContext) -> list[Metric]:
    """The speed metric family: time `model.sample(cfg.speed.n)` in every sampling mode the model offers.

    Reads `ctx.cfg.speed`: `enabled`, `n` (batch size), `repeats`, `warmup` and the optional `budget_s` (wall
    seconds per mode; a mode slower than that gets its first call and one timed call). Speed does not depend on
    the data, and the timed calls draw fresh samples (never the context's cached ones).

    Returns:
        Two metrics per sampling mode, fp32, eager.
    """
    sc, model = ctx.cfg.speed, ctx.model
    if not sc.enabled:
        return []
    device = model.device
    # Noise drawn on the model's device, from a generator of the evaluation's own seeded by its `speed` stream:
    # what `genbench speed` times too, with no host-to-device copy per draw.
    generator = device_generator(ctx.generator("speed"), device)
    metrics: list[Metric] = []
    for mode in model.sampling_modes:
        call = sampler(model, int(sc.n), mode, "fp32", generator)
        with torch.inference_mode():
            timing = time_calls(call, device, int(sc.repeats), int(sc.get("warmup", 1)), sc.get("budget_s"), 1)
        point = {**environment(device), "mode": mode, "dtype": "fp32", "compile": False, "load_avg_1m": load_average()}
        point["network_evaluations"] = model.network_evaluations(mode)
        metrics += point_metrics({**point, **timing_fields(timing, int(sc.n))})
    return metrics


def measure_point(
    model: GenerativeModel,
    mode: str,
    dtype: str,
    batch_size: int,
    sc: DictConfig,
    generator: torch.Generator | None,
    flops_per_sample: int | None,
    compiled: bool = False,
    sample: SampleFn | None = None,
    counter: CountingBackend | None = None,
) -> dict[str, Any]:
    """Time one (mode, dtype, batch size) point; `sample` and `counter` come from `compiled_sampling`.

    An out-of-memory error becomes a point with status `oom`. Any other error is a bug in plain fp32 eager sampling
    (the model contract) and is raised; under autocast or compilation, which a model may not support, it becomes a
    point with status `error` and its message, so one unsupported variant does not end a long GPU sweep. A compiled
    point records what its calls compiled and ran: `compiled_graphs`, `graph_breaks`, and `compiled_calls`, the
    calls of compiled graphs (0: nothing it ran was compiled).
    """
    device = model.device
    point: dict[str, Any] = {"mode": mode, "dtype": dtype, "batch_size": batch_size}
    call = sampler(model, batch_size, mode, dtype, generator, sample)
    before = (_graph_breaks(), counter.graphs, counter.calls) if counter is not None else None
    try:
        with torch.inference_mode(), peak_memory(device) as memory:
            timing = time_calls(call, device, int(sc.repeats), int(sc.warmup), sc.budget_s, int(sc.min_repeats))
    except Exception as err:
        status = "oom" if is_out_of_memory(err) else "error"
        if status == "error" and dtype == "fp32" and not compiled:
            raise
        error = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
    else:
        status = "ok"
    if before is not None:
        after = (_graph_breaks(), counter.graphs, counter.calls)
        point.update(graph_breaks=after[0] - before[0], compiled_graphs=after[1] - before[1])
        point["compiled_calls"] = after[2] - before[2]
    if status != "ok":  # out of the except block, so the traceback no longer holds the failed batch's tensors
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {**point, "status": status, "error": error}
    point.update(status="ok", **timing_fields(timing, batch_size), **memory)
    point["load_avg_1m"] = load_average()
    achieved = None if flops_per_sample is None else flops_per_sample * point["throughput"]
    peak = peak_flops(device_name(device), dtype) if device.type == "cuda" else None
    point.update(
        flops_per_sample=flops_per_sample,
        achieved_flops=achieved,
        peak_flops=peak,
        fraction_of_peak=None if achieved is None or peak is None else achieved / peak,
    )
    return point


# --------------------------------------------------------------------------------------------------------------
# The sweep behind `genbench speed`: modes x compile x dtypes x batch sizes, until out-of-memory or budget.


def sweep_batches(
    model: GenerativeModel,
    mode: str,
    dtype: str,
    sc: DictConfig,
    generator: torch.Generator | None,
    flops_per_sample: int | None,
    compiled: bool = False,
    sample: SampleFn | None = None,
    counter: CountingBackend | None = None,
) -> list[dict[str, Any]]:
    """Points at growing batch sizes until memory runs out, the list ends, or the next point would break the budget."""
    sizes = [int(b) for b in sc.batch_sizes if int(b) <= int(sc.max_batch)]
    points: list[dict[str, Any]] = []
    for i, batch in enumerate(sizes):
        point = measure_point(model, mode, dtype, batch, sc, generator, flops_per_sample, compiled, sample, counter)
        log.info("speed %s %s batch %d: %s", mode, dtype, batch, _point_summary(point))
        points.append(point)
        if point["status"] != "ok":
            break
        reason = None if i + 1 == len(sizes) else _over_budget(points, sizes[i + 1], sc)
        if reason:
            points.append(
                {"mode": mode, "dtype": dtype, "batch_size": sizes[i + 1], "status": "budget", "error": reason}
            )
            break
    return points


def _over_budget(points: list[dict[str, Any]], next_batch: int, sc: DictConfig) -> str | None:
    """Why the next batch size would break `speed.budget_s` (first call + minimum repeats), or None.

    Stops when the last point alone could not fit in the budget, or when the growth of latency with batch size
    measured between the last two points (exponent clipped to [0, 1]: at most linear), carried on to the next
    batch, predicts so. After the first point nothing is predicted: small batches often cost the same.
    """
    if sc.budget_s is None:
        return None
    calls, last = 1 + int(sc.min_repeats), points[-1]
    if last["latency_median_s"] * calls > sc.budget_s:
        took = last["latency_median_s"]
        return f"batch {last['batch_size']} took {took:.3g} s/call x {calls} calls > speed.budget_s={sc.budget_s}"
    prev = points[-2] if len(points) >= 2 else None
    if prev is None or min(prev["latency_median_s"], last["latency_median_s"]) <= 0:
        return None
    slope = math.log(last["latency_median_s"] / prev["latency_median_s"]) / math.log(
        last["batch_size"] / prev["batch_size"]
    )
    predicted = last["latency_median_s"] * (next_batch / last["batch_size"]) ** min(max(slope, 0.0), 1.0)
    if predicted * calls > sc.budget_s:
        return f"predicted {predicted:.3g} s/call x {calls} calls > speed.budget_s={sc.budget_s}"
    return None


def _point_summary(point: dict[str, Any]) -> str:
    if point["status"] != "ok":
        return f"{point['status']} ({point.get('error', '')})"
    median, first = point["latency_median_s"], point["first_call_s"]
    return f"{point['throughput']:.4g} samples/s, {median:.4g} s/batch, first call {first:.4g} s"


def _graph_breaks() -> int:
    """Graph breaks so far in this process, from torch._dynamo's counters."""
    from torch._dynamo.utils import counters  # imported here: loading the compiler stack costs seconds

    return sum(counters["graph_break"].values())


class CountingBackend:
    """A torch.compile backend that counts the graphs it compiles and the calls of its compiled graphs.

    A new one per compiled variant also keeps an earlier variant's cached graphs out (dynamo checks the backend).
    """

    def __init__(self, backend: str) -> None:
        from torch._dynamo import lookup_backend  # imported here: loading the compiler stack costs seconds

        self.name, self.inner = backend, lookup_backend(backend)
        self.graphs = self.calls = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., Any]:
        self.graphs += 1
        compiled = self.inner(gm, example_inputs)

        def run(*args: Any) -> Any:
            self.calls += 1
            return compiled(*args)

        return run


def networks(model: GenerativeModel) -> list[tuple[str, nn.Module]]:
    """The modules whose forward a sampler may call: the model itself if its class has a forward, else its children
    with one (looking inside ModuleList/ModuleDict containers)."""
    if type(model).forward is not nn.Module.forward:
        return [("forward", model)]
    found: list[tuple[str, nn.Module]] = []
    stack = list(model.named_children())
    while stack:
        name, module = stack.pop(0)
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            stack += [(f"{name}.{child}", m) for child, m in module.named_children()]
        elif type(module).forward is not nn.Module.forward:
            found.append((name, module))
    return found


@contextlib.contextmanager
def compiled_sampling(
    model: GenerativeModel, mode: str, backend: str
) -> Iterator[tuple[SampleFn | None, str, CountingBackend]]:
    """What a compiled variant compiles: `(sample function or None, target in words, its counting backend)`.

    A one-pass sampler (one network evaluation per sample) is compiled whole: `torch.compile(model.sample)`. A
    sequential sampler (a chain, or one step per sub-pixel) would be unrolled by the compiler, so its networks'
    forwards are compiled instead (restored on exit) and its Python loop stays eager; a sampler that reaches its
    weights without calling a forward (a DBM's matrices, cached PixelCNN's per-pixel matmuls) compiles nothing,
    which the points' `compiled_calls` (0) show. None: there is nothing to compile at all.
    """
    counter = CountingBackend(backend)
    if model.network_evaluations(mode) == 1:
        yield torch.compile(model.sample, backend=counter), "sample()", counter
        return
    targets = networks(model)
    if not targets:
        yield None, "nothing: the model has no module with a forward", counter
        return
    for _, module in targets:
        module.forward = torch.compile(module.forward, backend=counter)
    try:
        names = ", ".join(name for name, _ in targets)
        yield model.sample, f"forward of {names} (sample() loop eager)", counter
    finally:
        for _, module in targets:
            del module.forward  # the instance attribute goes; the class's forward is back


def sweep(model: GenerativeModel, sc: DictConfig, generator: torch.Generator | None) -> list[dict[str, Any]]:
    """Every sampling mode (or `sc.modes`) x compile variants x dtypes x batch sizes of one model.

    bf16/fp16 run under autocast wherever torch has it for the device (CUDA, and the CPU in current torch); a dtype
    without autocast gets one point with status `unsupported`. A compiled variant records what it compiled.
    """
    device = model.device
    modes = [model.check_mode(m) for m in sc.modes] if sc.get("modes") else list(model.sampling_modes)
    unknown = [d for d in sc.dtypes if d not in DTYPES]
    if unknown:
        raise GenbenchError(f"unknown speed.dtypes {unknown}; accepted: {list(DTYPES)}")
    flops: dict[str, int | None] = {}
    for mode in modes:  # counted once per mode, eager fp32 at batch 1: FLOPs per sample do not depend on the rest
        with torch.inference_mode():
            flops[mode] = count_flops(sampler(model, 1, mode, "fp32", generator)) if sc.flops else None
    points: list[dict[str, Any]] = []
    first_batch = min(int(b) for b in sc.batch_sizes)  # where a line that does not run says why
    variants = [bool(c) for c in sc.compile] if _is_list(sc.compile) else [bool(sc.compile)]
    for compiled in variants:
        for mode in modes:
            variant = compiled_sampling(model, mode, sc.compile_backend) if compiled else _eager(model)
            with variant as (fn, target, counter):
                for dtype in sc.dtypes:
                    head = {"mode": mode, "dtype": dtype, "compile": compiled}
                    if compiled:
                        head["compile_target"] = target
                    if not autocast_supported(device, dtype):
                        reason = f"torch has no autocast for {device.type}"
                        points.append({**head, "batch_size": first_batch, "status": "unsupported", "error": reason})
                    elif fn is None:
                        points.append({**head, "batch_size": first_batch, "status": "skipped", "error": target})
                    else:
                        batches = sweep_batches(model, mode, dtype, sc, generator, flops[mode], compiled, fn, counter)
                        points += [{**p, **head} for p in batches]
    return points


@contextlib.contextmanager
def _eager(model: GenerativeModel) -> Iterator[tuple[SampleFn, str, None]]:
    yield model.sample, "eager", None


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)
