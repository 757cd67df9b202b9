"""Benchmark: genbench's exact Fréchet distance against pytorch-fid's `calculate_frechet_distance`.

Both compute the FID formula of Heusel et al. (2017) on the same random 2048-d statistics (the size of Inception
pool3 features), side by side in one process, alternating, with the median of a few repeats; the record states
the device, the thread count, the times, their ratio and the relative difference of the two values.

Run:  .venv/bin/python benchmarks/frechet_distance.py            (writes results/speed/frechet_distance.json)
      .venv/bin/python benchmarks/frechet_distance.py --dim 512 --repeats 5 --out /tmp/fd.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from genbench.metrics.frechet import frechet_distance
from genbench.results import atomic_write_text, device_name, git_commit, package_versions


def random_statistics(dim: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of `n` correlated Gaussian feature vectors (full rank when n > dim)."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    feats = rng.standard_normal((n, dim)) @ mixing + rng.standard_normal(dim)  # (n, dim)
    return feats.mean(0), np.cov(feats, rowvar=False)


def timed(fn: Callable[[], float], device: torch.device | None = None) -> tuple[float, float, float]:
    """(wall seconds, process CPU seconds, value) of one call; synchronises a CUDA device around it.

    CPU seconds (all threads of this process) are reported beside wall time because a shared machine's load
    stretches wall time; at one thread they measure the work itself.
    """
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    value = fn()
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/speed/frechet_distance.json"))
    args = parser.parse_args()

    mu1, s1 = random_statistics(args.dim, args.dim + 500, seed=0)
    mu2, s2 = random_statistics(args.dim, args.dim + 1000, seed=1)
    gpu = torch.device("cuda") if torch.cuda.is_available() else None
    candidates: dict[str, Callable[[], float]] = {
        "genbench_numpy": lambda: frechet_distance(mu1, s1, mu2, s2),
        "genbench_torch_cpu": lambda: frechet_distance(mu1, s1, mu2, s2, device="cpu"),
        "pytorch_fid": lambda: calculate_frechet_distance(mu1, s1, mu2, s2),
    }
    if gpu is not None:
        candidates["genbench_torch_cuda"] = lambda: frechet_distance(mu1, s1, mu2, s2, device=gpu)
        frechet_distance(mu1[:8], s1[:8, :8], mu2[:8], s2[:8, :8], device=gpu)  # CUDA context and kernels: warm-up

    times: dict[str, list[float]] = {name: [] for name in candidates}
    cpu_times: dict[str, list[float]] = {name: [] for name in candidates}
    values: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's sqrtm(disp=...) inside pytorch-fid
        for rep in range(args.repeats):
            for name, fn in candidates.items():  # alternate, so load changes hit every candidate alike
                seconds, cpu_seconds, values[name] = timed(fn, gpu if name.endswith("cuda") else None)
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)
                print(f"repeat {rep + 1}/{args.repeats} {name:>20}: {seconds:8.3f} s wall {cpu_seconds:8.3f} s cpu")

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    cpu_medians = {name: statistics.median(ts) for name, ts in cpu_times.items()}
    reference = values["pytorch_fid"]
    record = {
        "benchmark": "frechet_distance",
        "command": f"python benchmarks/frechet_distance.py --dim {args.dim} --repeats {args.repeats}",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "device": device_name("cpu"),
        "gpu": device_name(gpu) if gpu is not None else None,
        "torch_threads": torch.get_num_threads(),
        "dim": args.dim,
        "repeats": args.repeats,
        "times_s": times,
        "median_s": medians,
        "speedup_vs_pytorch_fid": {n: medians["pytorch_fid"] / t for n, t in medians.items() if n != "pytorch_fid"},
        "cpu_times_s": cpu_times,
        "cpu_median_s": cpu_medians,
        "cpu_speedup_vs_pytorch_fid": {
            n: cpu_medians["pytorch_fid"] / t for n, t in cpu_medians.items() if n != "pytorch_fid"
        },
        "load_average_1min_at_end": os.getloadavg()[0],
        "values": values,
        "relative_difference_vs_pytorch_fid": {n: abs(v - reference) / abs(reference) for n, v in values.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("median_s", "speedup_vs_pytorch_fid", "cpu_speedup_vs_pytorch_fid")}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
