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
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

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
from genbench.model import GenerativeModel
from genbench.results import Metric, device_name

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
METRIC_EXTRA_KEYS = (
    "device", "torch", "threads", "batch_size", "dtype", "mode", "compile", "weights", "repeats", "load_avg_1m",
    "network_evaluations",
)  # fmt: skip
# A timing is told apart by where and how it was taken; the load and the repeats describe it.
SPEED_VARIANT = ("device", "batch_size", "dtype", "mode", "compile")


# --------------------------------------------------------------------------------------------------------------
# One point: exactly `model.sample(n)` in one mode, dtype and batch size; its record metrics.


def sampler(
    model: GenerativeModel, n: int, mode: str, dtype: str, generator: torch.Generator | None
) -> Callable[[], torch.Tensor]:
    """The timed call: exactly `model.sample(n)`, under autocast for a reduced-precision dtype."""
    device_type = model.device.type

    def call() -> torch.Tensor:
        ctx = torch.autocast(device_type, dtype=DTYPES[dtype]) if dtype != "fp32" else contextlib.nullcontext()
        with ctx:
            return model.sample(n, generator=generator, mode=mode)

    return call


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
    generator = ctx.generator("speed")
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
) -> dict[str, Any]:
    """Time one (mode, dtype, batch size) point.

    An out-of-memory error becomes a point with status `oom`. Any other error is a bug in plain fp32 eager sampling
    (the model contract) and is raised; under autocast or compilation, which a model may not support, it becomes a
    point with status `error` and its message, so one unsupported variant does not end a long GPU sweep.
    """
    device = model.device
    point: dict[str, Any] = {"mode": mode, "dtype": dtype, "batch_size": batch_size}
    call = sampler(model, batch_size, mode, dtype, generator)
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
) -> list[dict[str, Any]]:
    """Points at growing batch sizes until memory runs out, the list ends, or the next point would break the budget."""
    sizes = [int(b) for b in sc.batch_sizes if int(b) <= int(sc.max_batch)]
    points: list[dict[str, Any]] = []
    for i, batch in enumerate(sizes):
        point = measure_point(model, mode, dtype, batch, sc, generator, flops_per_sample, compiled)
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


def sweep(model: GenerativeModel, sc: DictConfig, generator: torch.Generator | None) -> list[dict[str, Any]]:
    """Every sampling mode (or `sc.modes`) x compile variants x dtypes x batch sizes of one model."""
    device = model.device
    modes = [model.check_mode(m) for m in sc.modes] if sc.get("modes") else list(model.sampling_modes)
    dtypes = [d for d in sc.dtypes if device.type == "cuda" or d == "fp32"]  # autocast timings are a GPU matter
    unknown = [d for d in sc.dtypes if d not in DTYPES]
    if unknown:
        raise GenbenchError(f"unknown speed.dtypes {unknown}; accepted: {list(DTYPES)}")
    flops: dict[str, int | None] = {}
    for mode in modes:  # counted once per mode, eager fp32 at batch 1: FLOPs per sample do not depend on the rest
        with torch.inference_mode():
            flops[mode] = count_flops(sampler(model, 1, mode, "fp32", generator)) if sc.flops else None
    points: list[dict[str, Any]] = []
    variants = list(sc.compile) if OmegaConf.is_list(sc.compile) else [bool(sc.compile)]
    for compiled in variants:
        if compiled:
            # Compile the networks sample() calls, not sample() itself: its Python loop (one step per pixel in
            # autoregressive models) stays eager, so compilation does not unroll thousands of steps.
            for child in model.children():
                child.compile(backend=sc.compile_backend)
        for mode in modes:
            for dtype in dtypes:
                points += [
                    {**p, "compile": bool(compiled)}
                    for p in sweep_batches(model, mode, dtype, sc, generator, flops[mode], bool(compiled))
                ]
    return points
