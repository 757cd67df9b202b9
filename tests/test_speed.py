"""Tests of the sampling-speed harness (genbench/metrics/speed.py) on tiny CPU models; no timing thresholds."""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from genbench import speed as speed_command
from genbench.data import DataSpec
from genbench.errors import GenbenchError
from genbench.metrics import speed, speed_timing
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel, randn
from genbench.report.speed import speed_report

CONF = Path(__file__).resolve().parents[1] / "conf"
SPEC = DataSpec("tiny", (1, 4, 4), 256, (0.0, 1.0), 8, 8, "synthetic")
POINT_KEYS = (
    "model", "dataset", "shape", "weights", "device", "torch", "threads", "cpu_model", "mode", "dtype", "compile",
    "batch_size", "status", "throughput", "latency_median_s", "latency_min_s", "latency_max_s", "first_call_s",
    "repeats", "warmup", "cpu_time_median_s", "load_avg_1m", "peak_memory_bytes", "memory_kind", "flops_per_sample",
    "achieved_flops", "peak_flops", "fraction_of_peak",
)  # fmt: skip


class TinyLinear(GenerativeModel):
    """A one-layer 'generator' z -> sigmoid(W z + b), with two sampling modes that differ in work done."""

    sampling_modes = ("fast", "slow")

    def __init__(self, spec: DataSpec, latent_dim: int = 8) -> None:
        super().__init__(spec)
        self.latent_dim = latent_dim
        self.net = nn.Linear(latent_dim, spec.dim)

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        mode = self.check_mode(mode)
        z = randn((n, self.latent_dim), generator, self.device)
        x = self.net(z)  # (n, D)
        if mode == "slow":  # a second pass, so the two modes have different FLOP counts
            x = self.net(z) + x
        return torch.sigmoid(x).view(n, *self.spec.shape)  # (n, C, H, W)


def test_evaluate_times_every_mode_with_every_field() -> None:
    cfg = OmegaConf.create({"speed": {"enabled": True, "n": 4, "repeats": 3, "warmup": 1}})
    metrics = speed.evaluate(EvalContext(TinyLinear(SPEC), None, cfg))
    assert [(m.name, m.extra["mode"]) for m in metrics] == [
        ("sample_throughput", "fast"),
        ("sample_latency", "fast"),
        ("sample_throughput", "slow"),
        ("sample_latency", "slow"),
    ]
    for m in metrics:
        assert m.kind == "measured" and m.n == 3
        for key in ("device", "batch_size", "dtype", "mode", "torch", "threads", "first_call_s"):
            assert key in m.extra, key
        assert m.extra["batch_size"] == 4 and m.extra["dtype"] == "fp32"
    thr, lat = metrics[0], metrics[1]
    assert thr.unit == "samples/s" and lat.unit == "s"
    assert thr.value == pytest.approx(4 / lat.value)
    assert lat.extra["min_s"] <= lat.value <= lat.extra["max_s"]


def test_evaluate_budget_cuts_a_slow_mode_to_one_timed_call() -> None:
    cfg = OmegaConf.create({"speed": {"enabled": True, "n": 4, "repeats": 5, "warmup": 1, "budget_s": -1.0}})
    metrics = speed.evaluate(EvalContext(TinyLinear(SPEC), None, cfg))
    assert len(metrics) == 4 and all(m.n == 1 and m.extra["repeats"] == 1 for m in metrics)


def test_evaluate_disabled_returns_nothing() -> None:
    cfg = OmegaConf.create({"speed": {"enabled": False, "n": 4, "repeats": 3, "warmup": 1}})
    assert speed.evaluate(EvalContext(TinyLinear(SPEC), None, cfg)) == []


def test_time_calls_counts_calls_and_respects_budget() -> None:
    calls = []
    timing = speed_timing.time_calls(lambda: calls.append(1), torch.device("cpu"), repeats=5, warmup=2)
    assert len(calls) == 1 + 2 + 5 and len(timing.times_s) == 5
    calls.clear()
    # a spent budget skips the warm-up and stops after the minimum number of timed repeats
    timing = speed_timing.time_calls(lambda: calls.append(1), torch.device("cpu"), 10, 2, budget_s=-1.0, min_repeats=2)
    assert len(timing.times_s) == len(timing.cpu_times_s) == 2 and timing.warmup == 0 and len(calls) == 3


def sweep_cfg(**overrides: object) -> DictConfig:
    """A tiny CPU sweep config: the keys of conf/speed/default.yaml."""
    base = OmegaConf.load(CONF / "speed" / "default.yaml")
    tiny = {"batch_sizes": [1, 2, 4, 8], "max_batch": 8, "repeats": 2, "warmup": 0, "min_repeats": 1, "budget_s": None}
    tiny["dtypes"] = ["fp32"]
    return OmegaConf.merge(base, tiny, overrides)


class OOMAt(TinyLinear):
    """TinyLinear that fails like an exhausted allocator at batch sizes >= `limit`."""

    def __init__(self, spec: DataSpec, limit: int, error: BaseException) -> None:
        super().__init__(spec)
        self.limit, self.error = limit, error

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        if n >= self.limit:
            raise self.error
        return super().sample(n, generator, mode)


def test_flop_count_of_a_linear_layer_matches_the_hand_count() -> None:
    model = TinyLinear(SPEC, latent_dim=8)
    d_in, d_out = 8, SPEC.dim
    # one sample = one (1 x d_in) @ (d_in x d_out) matmul = d_in * d_out multiply-adds = 2 * d_in * d_out FLOPs
    assert speed_timing.count_flops(speed.sampler(model, 1, "fast", "fp32", None)) == 2 * d_in * d_out
    assert speed_timing.count_flops(speed.sampler(model, 3, "fast", "fp32", None)) == 3 * 2 * d_in * d_out
    assert speed_timing.count_flops(speed.sampler(model, 1, "slow", "fp32", None)) == 2 * 2 * d_in * d_out
    points = speed.sweep(model, sweep_cfg(batch_sizes=[2], max_batch=2), torch.Generator())
    assert {p["mode"]: p["flops_per_sample"] for p in points} == {"fast": 2 * d_in * d_out, "slow": 4 * d_in * d_out}
    for p in points:
        assert p["achieved_flops"] == pytest.approx(p["flops_per_sample"] * p["throughput"])
        assert p["fraction_of_peak"] is None  # no peak for a CPU


def test_record_has_every_field() -> None:
    model = TinyLinear(SPEC)
    sc = sweep_cfg()
    points = speed.sweep(model, sc, torch.Generator().manual_seed(0))
    record = speed_command.speed_record(model, "tiny", SPEC, "random", sc, points)
    for key in ("kind", "model", "dataset", "shape", "weights", "device", "torch", "threads", "cpu_model", "protocol"):
        assert key in record, key
    assert record["shape"] == "4x4" and record["weights"] == "random"
    assert [(p["mode"], p["batch_size"]) for p in record["points"]] == [
        (m, b) for m in ("fast", "slow") for b in (1, 2, 4, 8)
    ]
    for p in record["points"]:
        missing = [k for k in POINT_KEYS if k not in p]
        assert not missing, missing
        assert p["status"] == "ok" and p["repeats"] == 2 and p["compile"] is False and p["dtype"] == "fp32"
        assert p["latency_min_s"] <= p["latency_median_s"] <= p["latency_max_s"]
        assert p["throughput"] == pytest.approx(p["batch_size"] / p["latency_median_s"])
        assert p["memory_kind"] in ("rss_peak_delta", "rss_maxrss_growth") and p["peak_memory_bytes"] >= 0
    names = [(m["name"], m["mode"], m["batch_size"]) for m in record["metrics"]]
    assert len(names) == 2 * len(record["points"]) and ("sample_latency", "slow", 8) in names
    for m in record["metrics"]:
        assert m["kind"] == "measured" and all(k in m for k in ("device", "batch_size", "dtype", "mode", "torch"))


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes."),
        MemoryError(),
    ],
)
def test_batch_sweep_stops_cleanly_at_out_of_memory(error: BaseException) -> None:
    model = OOMAt(SPEC, limit=4, error=error)
    points = speed.sweep(model, sweep_cfg(modes=["fast"]), torch.Generator())
    assert [(p["batch_size"], p["status"]) for p in points] == [(1, "ok"), (2, "ok"), (4, "oom")]
    assert type(error).__name__ in points[-1]["error"]


def test_other_errors_are_not_taken_for_out_of_memory() -> None:
    model = OOMAt(SPEC, limit=2, error=RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        speed.sweep(model, sweep_cfg(modes=["fast"]), torch.Generator())


def test_an_error_under_autocast_or_compile_is_recorded_not_raised() -> None:
    model = OOMAt(SPEC, limit=1, error=RuntimeError("no kernel for this dtype"))
    sc = sweep_cfg()
    for dtype, compiled in (("bf16", False), ("fp32", True)):
        point = speed.measure_point(model, "fast", dtype, 2, sc, None, None, compiled=compiled)
        assert point["status"] == "error" and "no kernel for this dtype" in point["error"]
    with pytest.raises(RuntimeError, match="no kernel"):  # plain fp32 eager sampling is the contract: a bug raises
        speed.measure_point(model, "fast", "fp32", 2, sc, None, None, compiled=False)


def test_sweep_stops_before_a_point_over_budget() -> None:
    # a negative budget: every next point is predicted to exceed it, so the sweep stops after the first
    points = speed.sweep(TinyLinear(SPEC), sweep_cfg(modes=["slow"], budget_s=-1.0), torch.Generator())
    assert [(p["batch_size"], p["status"]) for p in points] == [(1, "ok"), (2, "budget")]


def test_budget_prediction_follows_the_measured_growth_with_batch_size() -> None:
    sc = OmegaConf.create({"budget_s": 5.0, "min_repeats": 1})  # a point = first call + 1 repeat = 2 calls

    def pts(*latencies: float) -> list[dict]:
        return [{"batch_size": b, "latency_median_s": t} for b, t in zip((1, 16), latencies, strict=False)]

    assert speed._over_budget(pts(1.0), 16, sc) is None  # one point: no prediction
    assert "took 3" in speed._over_budget(pts(3.0), 16, sc)  # 2 x 3 s > 5 s already
    assert speed._over_budget(pts(1.0, 1.0), 64, sc) is None  # flat: 1 s predicted at batch 64
    # slope log 2 / log 16 = 1/4: 1 s * 4**0.25 = 1.41 s/call, 2.83 s a point: within 5 s, not within 2.5 s
    assert speed._over_budget(pts(0.5, 1.0), 64, sc) is None
    assert "predicted 1.41 s" in speed._over_budget(pts(0.5, 1.0), 64, OmegaConf.merge(sc, {"budget_s": 2.5}))
    assert "predicted 4 s" in speed._over_budget(pts(0.5, 2.0), 64, sc)  # slope 1/2: 2 s * 4**0.5 = 4 s/call


def test_reduced_precision_runs_under_cpu_autocast_and_unknown_dtypes_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = TinyLinear(SPEC)
    assert speed.sampler(model, 2, "fast", "bf16", None)().dtype == torch.bfloat16  # autocast really applied
    assert speed.sampler(model, 2, "fast", "fp32", None)().dtype == torch.float32
    points = speed.sweep(model, sweep_cfg(modes=["fast"], dtypes=["fp32", "bf16"]), torch.Generator())
    assert {(p["dtype"], p["status"]) for p in points} == {("fp32", "ok"), ("bf16", "ok")}
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    points = speed.sweep(model, sweep_cfg(modes=["fast"], dtypes=["fp32", "bf16"]), torch.Generator())
    bf16 = [p for p in points if p["dtype"] == "bf16"]
    assert [(p["status"], p["batch_size"]) for p in bf16] == [("unsupported", 1)] and "autocast" in bf16[0]["error"]
    with pytest.raises(GenbenchError, match="fp8"):
        speed.sweep(model, sweep_cfg(dtypes=["fp8"]), torch.Generator())


def test_compiled_variant_is_measured_apart() -> None:
    sc = sweep_cfg(modes=["fast"], batch_sizes=[2], compile=[False, True], compile_backend="eager", flops=False)
    points = speed.sweep(TinyLinear(SPEC), sc, torch.Generator())
    assert [(p["compile"], p["status"]) for p in points] == [(False, "ok"), (True, "ok")]


class Chain(GenerativeModel):
    """A sequential sampler (a chain of `steps` network evaluations); `direct=True` uses the weights without
    calling the network's forward, as cached PixelCNN does; `modules=False` has no module at all, as the DBM."""

    def __init__(self, spec: DataSpec, steps: int = 3, direct: bool = False, modules: bool = True) -> None:
        super().__init__(spec)
        self.steps, self.direct = steps, direct
        if modules:
            self.net = nn.Linear(spec.dim, spec.dim)
        else:
            self.weight = nn.Parameter(torch.eye(spec.dim))

    def network_evaluations(self, mode: str | None = None) -> int:
        return self.steps

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        x = randn((n, self.spec.dim), generator, self.device)
        for _ in range(self.steps):
            if not hasattr(self, "net"):
                x = torch.tanh(x @ self.weight)
            elif self.direct:
                x = torch.tanh(nn.functional.linear(x, self.net.weight, self.net.bias))
            else:
                x = torch.tanh(self.net(x))
        return x.view(n, *self.spec.shape)


def test_compiled_variants_record_what_they_compiled() -> None:
    sc = {"batch_sizes": [2], "compile": [True], "compile_backend": "eager", "flops": False}
    (one_pass,) = speed.sweep(TinyLinear(SPEC), sweep_cfg(modes=["fast"], **sc), torch.Generator())
    assert one_pass["compile_target"] == "sample()" and one_pass["compiled_graphs"] >= 1
    assert one_pass["compiled_calls"] >= 1 + one_pass["repeats"]  # every call ran compiled code
    chain = Chain(SPEC)
    (seq,) = speed.sweep(chain, sweep_cfg(**sc), torch.Generator())
    assert seq["status"] == "ok" and seq["compiled_graphs"] >= 1
    assert seq["compiled_calls"] == (1 + seq["repeats"]) * chain.steps  # one compiled forward per chain step
    assert seq["compile_target"] == "forward of net (sample() loop eager)"
    assert "forward" not in vars(chain.net)  # the compiled forward is gone after the variant: the model is eager
    (direct,) = speed.sweep(Chain(SPEC, direct=True), sweep_cfg(**sc), torch.Generator())
    assert direct["status"] == "ok" and direct["compiled_calls"] == 0  # honest: nothing it ran was compiled
    (bare,) = speed.sweep(Chain(SPEC, modules=False), sweep_cfg(**sc), torch.Generator())
    assert bare["status"] == "skipped" and bare["compile"] is True and "no module" in bare["error"]


def test_evaluate_draws_noise_on_the_models_device() -> None:
    """The run record's speed metric times sampling with no host-to-device copy (meta stands in for a GPU)."""
    cfg = OmegaConf.create({"speed": {"enabled": True, "n": 4, "repeats": 2, "warmup": 0}})
    model = Chain(SPEC, steps=20).to("meta")
    with speed_timing.device_traffic() as traffic:
        metrics = speed.evaluate(EvalContext(model, None, cfg))
    assert len(metrics) == 2 and traffic.copies == 0 and traffic.syncs == 0 and traffic.ops > 3 * 20


def test_peak_memory_sees_a_large_allocation_on_cpu() -> None:
    with speed_timing.peak_memory(torch.device("cpu")) as mem:
        block = torch.ones(16 * 2**20)  # 64 MiB, every page touched
        del block
    assert mem["peak_memory_bytes"] >= 48 * 2**20


def test_peak_memory_is_not_hidden_by_garbage_collected_inside_the_block() -> None:
    """128 MiB of cyclic garbage, collected inside the block, would lower the RSS below the 64 MiB block's growth
    (measured as 0 before peak_memory collected garbage at its start)."""

    class Cycle:
        pass

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        cycle = Cycle()
        cycle.me, cycle.block = cycle, torch.ones(32 * 2**20)
        del cycle
        with speed_timing.peak_memory(torch.device("cpu")) as mem:
            gc.collect()  # as an automatic collection would
            block = torch.ones(16 * 2**20)
            del block
    finally:
        if was_enabled:
            gc.enable()
    assert mem["peak_memory_bytes"] >= 48 * 2**20


# 80 MiB of heap chunks under glibc's mmap threshold, touched and freed, with the last one kept so the heap cannot
# trim its top: free but resident memory, as earlier work in a long process leaves it. Prints the peak of a 64 MiB
# block allocated over it, with malloc_trim on or off.
_RESIDENT_HEAP_SCRIPT = """
import ctypes, sys, torch
from genbench.metrics import speed_timing
if sys.argv[1] == "off":
    speed_timing._malloc_trim = lambda: None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
chunks = [libc.malloc(100 * 1024) for _ in range(820)]
for chunk in chunks:
    ctypes.memset(chunk, 1, 100 * 1024)
pin = chunks.pop()
for chunk in chunks:
    libc.free(chunk)
with speed_timing.peak_memory(torch.device("cpu")) as mem:
    block = torch.ones(16 * 2**20)
    del block
print(mem["peak_memory_bytes"])
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's heap and malloc_trim"
)
def test_peak_memory_sees_a_block_served_from_free_resident_heap() -> None:
    """The full suite once measured a 64 MiB block as 0: malloc served it from heap that earlier tests had freed but
    kept resident. Without the trim this scenario under-counts (so it reproduces that); with it the block shows."""

    def peak(trim: str) -> int:
        run = subprocess.run([sys.executable, "-c", _RESIDENT_HEAP_SCRIPT, trim], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    assert peak("off") < 32 * 2**20
    assert peak("on") >= 48 * 2**20


def test_peak_flops_table_matches_device_names() -> None:
    assert speed_timing.peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert speed_timing.peak_flops("NVIDIA H100 PCIe", "fp32") == 51e12
    assert speed_timing.peak_flops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5e12
    assert speed_timing.peak_flops("NVIDIA A10", "fp32") == 31.2e12
    assert speed_timing.peak_flops("Tesla T4", "bf16") is None  # no bf16 on Turing
    assert speed_timing.peak_flops("cpu (x86_64, 2 threads)", "fp32") is None


def fake_point(model: str, mode: str, batch: int, throughput: float, status: str = "ok") -> dict:
    point = {"model": model, "mode": mode, "dtype": "fp32", "compile": False, "batch_size": batch, "status": status}
    point.update(shape="28x28", device="devX", torch="t", threads=1, dataset="mnist", weights="random")
    if status == "ok":
        point.update(throughput=throughput, latency_median_s=batch / throughput, latency_min_s=batch / throughput)
        point.update(latency_max_s=batch / throughput, first_call_s=1.0, repeats=10)
    return point


def test_speed_report_ratio_table_against_the_gan(tmp_path: Path) -> None:
    gan = [fake_point("gan", "default", 1, 1000.0), fake_point("gan", "default", 16, 8000.0)]
    pix = [
        fake_point("pixelcnn", "cached", 1, 50.0),
        fake_point("pixelcnn", "cached", 16, 400.0),
        fake_point("pixelcnn", "naive", 1, 2.0),
        fake_point("pixelcnn", "naive", 16, 0.0, status="oom"),
    ]
    for name, points in (("gan", gan), ("pixelcnn", pix)):
        speed_command.write_record({"kind": "speed", "points": points}, tmp_path / name)
    written = speed_report(tmp_path, reference="gan")
    text = written["ratios"].read_text()
    assert "### Against gan at 28x28 on devX, fp32" in text
    # batch 1 is the largest batch every line reached; lines after the reference, fastest first
    assert "throughput gan : pixelcnn (cached) : pixelcnn (naive)\n= 1 : 1/20 : 1/500\n" in text
    assert "| pixelcnn (cached) | 50 | 20 | – | 400 (16) |" in text  # 1000/50; no CPU times in these records
    per_batch = text.split("per batch size")[1]
    table = [
        line.split("|")[1:-1] for line in per_batch.splitlines() if line.startswith("| ") and "batch 1" not in line
    ]
    rows = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in table}
    assert rows["gan"] == ["1", "1"]
    assert rows["pixelcnn (cached)"] == ["20", "20"]  # 1000/50 and 8000/400
    assert rows["pixelcnn (naive)"] == ["500", "n/a: oom"]  # 1000/2
    csv_lines = written["csv"].read_text().splitlines()
    assert len(csv_lines) == 1 + 6 and csv_lines[0].startswith("model,mode,dtype")
    assert written["png"].stat().st_size > 0 and "oom" in written["md"].read_text()


def compose_speed(tmp_path: Path, *overrides: str) -> DictConfig:
    """The config `genbench speed <overrides>` gets, with a tiny CPU sweep and outputs in tmp_path."""
    from hydra import compose, initialize_config_dir

    tiny = ["speed=cpu", "speed.batch_sizes=[1,2]", "speed.repeats=2", "speed.warmup=0", "train.device=cpu"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*tiny, "dataset=digits", f"out_dir={tmp_path / 'one'}", *overrides])


def test_run_speed_one_fresh_model_writes_record_and_report(tmp_path: Path) -> None:
    (record,) = speed_command.run_speed(compose_speed(tmp_path, "model=gan"))
    assert record["model"] == "gan" and record["weights"] == "random" and record["shape"] == "8x8"
    for name in ("speed.json", "speed_table.md", "speed_table.csv", "speed.png", "speed_ratios.md"):
        assert (tmp_path / "one" / name).exists(), name
    assert json.loads((tmp_path / "one" / "speed.json").read_text())["points"] == record["points"]


def test_run_speed_several_models_in_one_command(tmp_path: Path) -> None:
    cfg = compose_speed(tmp_path, "speed.models=[gan,vae]", f"speed.out_dir={tmp_path / 'many'}")
    records = speed_command.run_speed(cfg)
    assert [r["model"] for r in records] == ["gan", "vae"]
    assert (tmp_path / "many" / "gan" / "speed.json").exists() and (tmp_path / "many" / "vae" / "speed.json").exists()
    text = (tmp_path / "many" / "speed_ratios.md").read_text()
    assert f"### Against gan at 8x8 on {records[0]['device']}, fp32" in text and "throughput gan : vae\n" in text
    with pytest.raises(GenbenchError, match="unknown model 'nope'"):
        speed_command.run_speed(compose_speed(tmp_path, "speed.models=[nope]"))


def test_run_speed_on_a_run_directory_says_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_cfg = OmegaConf.create({"model": {"name": "tiny"}})
    monkeypatch.setattr(speed_command, "load_run", lambda run_dir: (TinyLinear(SPEC), FakeData(SPEC), run_cfg))
    (record,) = speed_command.run_speed(compose_speed(tmp_path, f"run_dir={tmp_path}", "speed.modes=[fast]"))
    assert record["weights"] == "trained" and record["model"] == "tiny"
    assert {p["mode"] for p in record["points"]} == {"fast"}


class FakeData:
    def __init__(self, spec: DataSpec) -> None:
        self.spec = spec


def test_run_speed_skips_a_model_that_refuses_the_data_and_says_why(tmp_path: Path) -> None:
    cfg = compose_speed(tmp_path, "dataset=toy2d", "speed.models=[gan,pixelcnn]", f"speed.out_dir={tmp_path / 'toy'}")
    gan, pixelcnn = speed_command.run_speed(cfg)
    assert gan["status"] == "ok" and gan["shape"] == "2" and gan["points"]
    assert pixelcnn["status"] == "skipped" and pixelcnn["points"] == [] and "toy2d" in pixelcnn["error"]
    assert "Not measured: pixelcnn" in (tmp_path / "toy" / "speed_table.md").read_text()


# ----------------------------------------------------------------------------- the prepared GPU run, in smoke mode

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked: the GPU machine may not have it")
sys.meta_path.insert(0, Blocked())
"""


def run_gpu_bench(tmp_path: Path, blocked: set[str], *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    """benchmarks/gpu_bench.py --smoke in a fresh interpreter where the `blocked` packages cannot be imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(blocked)))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = tmp_path / "out"
    command = [sys.executable, "benchmarks/gpu_bench.py", "--smoke", "--out", str(out), *args]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu_bench.json").read_text()), proc


@pytest.mark.slow
def test_gpu_bench_smoke_covers_every_model_without_hydra_omegaconf_or_yaml(tmp_path: Path) -> None:
    record, proc = run_gpu_bench(tmp_path, {"hydra", "omegaconf", "antlr4", "yaml"}, "--limit-s", "45")
    # the limit: parts stop at their shares; a call that overruns its prediction is the watchdog's (10 s later)
    assert record["finished_by"] == "completed" and record["wall_s"] <= 45 + 10, proc.stdout[-2000:]
    assert record["environment"]["yaml_reader"] == "minimal" and record["smoke"] is True
    assert list(record["parts"]) == ["speed_28", "pixelcnn", "train", "frechet", "speed_32"]
    models = {p.stem for p in (CONF / "model").glob("*.yaml")}
    for name in ("speed_28", "speed_32"):
        part = record["parts"][name]
        measured = {r["model"] for r in part["results"] if r["status"] == "ok" and r["batch_size"] == 1}
        said = {s.split(" ")[0] for s in part["skipped"]}
        assert models <= measured | said, (name, models - measured - said, part["skipped"])  # or said why not
        assert {r["status"] for r in part["results"]} <= {"ok", "oom", "error"}, part["results"]
    train = {r["model"]: r for r in record["parts"]["train"]["results"]}
    assert set(train) == models
    amp_skipped = {s.split(":")[0] for s in record["parts"]["train"]["skipped"] if "autocast" in s}
    for name, r in train.items():  # a budget may leave no room for the bf16 check; then the record says so
        assert r["status"] == "ok" and r["finite"] and r["steps"] > 0, name
        assert r.get("amp", {}).get("status") == "ok" or name in amp_skipped, name
    same = [r for r in record["parts"]["pixelcnn"]["results"] if r["check"] == "same samples"]
    assert same and all(r["equal_fraction"] == 1.0 for r in same)  # cached and naive PixelCNN agree
    fd = {r["route"]: r["value"] for r in record["parts"]["frechet"]["results"] if r["check"] == "frechet"}
    assert fd["genbench_numpy_cpu"] == pytest.approx(fd["pytorch_fid_cpu"], rel=1e-9)
    summary = (tmp_path / "out" / "summary.md").read_text()
    for heading in ("Smoke run", "## Time plan", "## Sampling speed at 8x8x3", "## Training on the device"):
        assert heading in summary, heading
    assert (tmp_path / "out" / "summary.png").stat().st_size > 0 and "wrote" in proc.stdout


def test_gpu_bench_records_why_a_part_is_skipped(tmp_path: Path) -> None:
    record, _ = run_gpu_bench(tmp_path, {"pytorch_fid"}, "--parts", "frechet")
    part = record["parts"]["frechet"]
    assert [r["route"] for r in part["results"]] == ["genbench_numpy_cpu"]
    assert any("pytorch-fid is not installed" in s for s in part["skipped"])
