"""Measuring one call: wall and CPU time (CUDA events on a GPU), peak memory, FLOPs, device traffic, where it ran.

The primitives under the sampling-speed harness (genbench/metrics/speed.py), free of models and configs. Timing
follows common benchmark practice: warm-up, device synchronisation, CUDA events, median of repeats (as nanoGPT's
bench.py and `torch.utils.benchmark` do). FLOPs are counted by `torch.utils.flop_counter` (2 per multiply-add of
matrix products and convolutions); peak FLOP/s come from NVIDIA's data sheets. Device traffic (ops, syncs,
host-device copies, float64 ops) is counted by a dispatch mode, so a CPU run on the `meta` device finds what would
stall a GPU.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import gc
import platform
import re
import resource
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from genbench.results import device_name

OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")
# Peak dense (no sparsity) FLOP/s from NVIDIA's data sheets. "fp32" is the plain (non-tensor-core) fp32 peak; cuDNN
# may run fp32 convolutions in TF32, so an fp32 fraction of peak can exceed what plain fp32 allows. Keys are matched
# as whole words in the device name, in this order (so "H100 PCIe" is found before "H100").
PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"fp32": 67e12, "bf16": 989e12, "fp16": 989e12}),
    ("H100 PCIe", {"fp32": 51e12, "bf16": 756e12, "fp16": 756e12}),
    ("H100 NVL", {"fp32": 60e12, "bf16": 835e12, "fp16": 835e12}),
    ("H100", {"fp32": 67e12, "bf16": 989e12, "fp16": 989e12}),
    ("A100", {"fp32": 19.5e12, "bf16": 312e12, "fp16": 312e12}),
    ("A10", {"fp32": 31.2e12, "bf16": 125e12, "fp16": 125e12}),
    ("L40S", {"fp32": 91.6e12, "bf16": 362e12, "fp16": 362e12}),
    ("L4", {"fp32": 30.3e12, "bf16": 121e12, "fp16": 121e12}),
    ("V100", {"fp32": 15.7e12, "fp16": 125e12}),
    ("T4", {"fp32": 8.1e12, "fp16": 65e12}),
)


# --------------------------------------------------------------------------------------------------------------
# Timing, memory and FLOPs of one call.


@dataclass
class Timing:
    """Wall times of one sampling call: the first call separately (it pays for any compilation), then repeats."""

    first_s: float
    times_s: list[float]
    cpu_times_s: list[float]  # process CPU seconds of each timed call: less sensitive than wall time to a busy host
    warmup: int  # warm-up calls made (skipped when the first call alone spent the budget)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)


def _timed_call(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call of `fn`; on CUDA the wall time is between two recorded events."""
    cpu_start = time.process_time()
    if device.type == "cuda":
        # Events record on the current stream of the current device: make that `device` (train.device=cuda:1 must
        # not time cuda:0's stream).
        with torch.cuda.device(device):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)  # kernels are asynchronous: wait before reading the events
        return start.elapsed_time(end) / 1000.0, time.process_time() - cpu_start
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s, time.process_time() - cpu_start


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
        budget_s: wall seconds for all the calls together: warm-up is skipped if the first call spent them, and
            repeats stop once they are spent, after `min_repeats`.
        min_repeats: timed calls made whatever the budget.

    Returns:
        The first call's time and the timed repeats.
    """
    first_s, _ = _timed_call(fn, device)
    over = budget_s is not None and first_s > budget_s
    warmup = 0 if over else warmup
    spent = first_s + sum(_timed_call(fn, device)[0] for _ in range(warmup))
    times: list[float] = []
    cpu_times: list[float] = []
    while len(times) < max(repeats, min_repeats, 1):
        wall_s, cpu_s = _timed_call(fn, device)
        times.append(wall_s)
        cpu_times.append(cpu_s)
        spent += wall_s
        if budget_s is not None and len(times) >= max(min_repeats, 1) and spent > budget_s:
            break
    return Timing(first_s, times, cpu_times, warmup)


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    """Return malloc's free heap pages to the kernel (glibc's `malloc_trim(0)`); nothing where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Measure the peak memory of the block: CUDA's max allocated bytes, or on CPU the growth of the process's RSS.

    On Linux, writing 5 to /proc/self/clear_refs resets the RSS high-water mark (VmHWM), so the peak is the block's
    own; without it, the growth of `ru_maxrss` is a lower bound (0 when the block stays under an earlier peak).
    Either way the CPU figure is the rise above the resident memory at the start. Free memory that malloc kept
    resident is handed back first (glibc's `malloc_trim`), so the block's reuse of it counts; where there is no
    glibc, or a caching allocator holds memory, reuse is not counted and the figure is a lower bound.
    """
    out: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        torch.cuda.synchronize(device)
        out.update(peak_memory_bytes=torch.cuda.max_memory_allocated(device), memory_kind="cuda_max_allocated")
        return
    # Garbage from earlier work, freed by a collection inside the block, would lower the RSS under the block's own
    # growth and hide it (the full test suite saw a 64 MiB block measured as 0): collect it before the baseline.
    gc.collect()
    # Heap that earlier work freed but malloc kept resident would serve the block without raising the RSS.
    _malloc_trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base_kib, kind = _proc_status_kib("VmRSS"), "rss_peak_delta"
    except OSError:
        base_kib, kind = None, "rss_maxrss_growth"
    if base_kib is None:
        base_kib, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rss_maxrss_growth"
    yield out
    peak_kib = _proc_status_kib("VmHWM") if kind == "rss_peak_delta" else None
    if peak_kib is None:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out.update(peak_memory_bytes=max(peak_kib - base_kib, 0) * 1024, memory_kind=kind)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call as `torch.utils.flop_counter` counts them (2 per multiply-add of matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------------------------
# Device traffic of one call: ops dispatched (about one kernel launch each), device syncs, host <-> device copies.

_ATEN = torch.ops.aten
_SCALAR_READS = (_ATEN._local_scalar_dense.default,)  # .item(), float(), int(), bool() of a tensor
# Ops whose output shape depends on the data: the host waits for the device to learn it.
_DATA_DEPENDENT = {
    _ATEN.nonzero.default,
    _ATEN.masked_select.default,
    _ATEN._unique2.default,
    _ATEN.unique_consecutive.default,
    _ATEN.unique_dim.default,
}
_COPIES = {_ATEN._to_copy.default, _ATEN.copy_.default, _ATEN._copy_from.default, _ATEN._copy_from_and_resize.default}
# Factories that take host data (a list, a number, an array): with a device argument they copy it there, below the
# dispatcher, so only the torch-function layer sees them.
_HOST_DATA_FACTORIES = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)


@dataclass
class Traffic:
    """What one call sent through the dispatcher; `where` names the line of each sync and copy (`file:line kind`).

    `syncs` are reads that make the host wait for the device: a scalar read of a device tensor or an op with a
    data-dependent output shape. `host_reads` are scalar reads of host tensors (an optimizer's CPU step count):
    free on any device, counted apart. `copies` are host <-> device transfers, either way. `float64` counts device
    ops with a double-precision output (slow on most GPUs).
    """

    ops: int = 0
    syncs: int = 0
    copies: int = 0
    host_reads: int = 0
    float64: int = 0
    where: collections.Counter = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("ops", "syncs", "copies", "host_reads", "float64")}


def _on_device(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type != "cpu"


def _caller() -> str:
    """The innermost frame outside torch and this file, `folder/file.py:line in function`: the code that asked."""
    for frame in reversed(traceback.extract_stack()):
        if not frame.filename.startswith(_TORCH_DIR) and frame.filename != __file__:
            parts = Path(frame.filename).parts
            return f"{'/'.join(parts[-2:])}:{frame.lineno} in {frame.name}"
    return "?"


class _DispatchCounter(TorchDispatchMode):
    def __init__(self, traffic: Traffic) -> None:
        super().__init__()
        self.traffic = traffic

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        kwargs = kwargs or {}
        t = self.traffic
        t.ops += 1
        if func in _SCALAR_READS:
            if not _on_device(args[0]):
                t.host_reads += 1
            else:
                t.syncs += 1
                t.where[f"{_caller()} sync"] += 1
                if args[0].device.type == "meta":  # no data on the meta device: read a zero and go on counting
                    return False if args[0].dtype == torch.bool else 0
        elif func in _DATA_DEPENDENT and _on_device(args[0]):
            t.syncs += 1
            t.where[f"{_caller()} sync ({func.__name__})"] += 1
        elif func in _COPIES:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            devices = {a.device.type == "cpu" for a in tensors}
            if "device" in kwargs and kwargs["device"] is not None:
                devices.add(torch.device(kwargs["device"]).type == "cpu")
            if len(devices) == 2:
                t.copies += 1
                t.where[f"{_caller()} copy"] += 1
        out = func(*args, **kwargs)
        if any(_on_device(o) and o.dtype == torch.float64 for o in tree_leaves(out)):
            t.float64 += 1
            t.where[f"{_caller()} float64"] += 1
        return out


class _FactoryCounter(TorchFunctionMode):
    def __init__(self, traffic: Traffic) -> None:
        super().__init__()
        self.traffic = traffic

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        kwargs = kwargs or {}
        if func in _HOST_DATA_FACTORIES:
            device = kwargs.get("device")
            if device is None and func is torch.Tensor.new_tensor:
                device = args[0].device
            data = args[1] if func is torch.Tensor.new_tensor else (args[0] if args else kwargs.get("data"))
            if device is not None and torch.device(device).type != "cpu" and not _on_device(data):
                self.traffic.copies += 1
                self.traffic.where[f"{_caller()} copy ({func.__name__})"] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def device_traffic() -> Iterator[Traffic]:
    """Count the ops, device syncs and host <-> device copies of the block (see `Traffic`).

    "Device" is anything but the CPU, so on a CPU-only machine a model moved to the `meta` device stands in for a
    GPU: it runs every op without data, a CPU generator's noise shows up as copies to it, and a scalar read of one
    of its tensors, a sync on a GPU, is counted (it reads 0 there, so the block runs on).
    """
    traffic = Traffic()
    with _FactoryCounter(traffic), _DispatchCounter(traffic):
        yield traffic


def peak_flops(name: str, dtype: str) -> float | None:
    """The device's peak dense FLOP/s for `dtype`, or None for a device (or dtype) not in `PEAK_FLOPS`."""
    for key, peaks in PEAK_FLOPS:
        if re.search(rf"\b{re.escape(key)}\b", name):
            return peaks.get(dtype)
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """True for the errors that mean "this batch does not fit": CUDA OOM, host MemoryError, allocator messages."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    # CUDA says "out of memory"; PyTorch's CPU allocator says "DefaultCPUAllocator: can't allocate memory".
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in OOM_MESSAGES)


# --------------------------------------------------------------------------------------------------------------
# Where a timing ran.


def environment(device: torch.device) -> dict[str, object]:
    """What every timing states about where it ran."""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_slug(device: torch.device) -> str:
    """A folder name for a device, e.g. 'nvidia-h100-80gb-hbm3' or 'cpu-x86-64-2-threads'."""
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def shape_label(shape: tuple[int, ...] | list[int]) -> str:
    """'28x28' for one channel, '32x32x3' for three, '2' for toy points."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}" if c == 1 else f"{h}x{w}x{c}"
    return "x".join(str(s) for s in shape)
