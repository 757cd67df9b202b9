"""Benchmark: genbench's sample-quality metrics against pytorch-fid and torch-fidelity, side by side.

On identical synthetic feature arrays (correlated Gaussians, float32 like Inception pool3 features) it times the
Fréchet distance (regular: n > d; singular: n < d), KID (100 subsets of 1000; exact float64 kernels, and the
float32 kernels of `precision="float32"`, checked against the exact value) and precision/recall (k = 3), from
features to value, for genbench and each peer in one process, alternating candidates, median of a few repeats,
at one thread and at all threads. It checks that the values agree (KID on the peer's own subsets, so the
comparison is exact up to the peer's float32), and records the load average around every case, the versions,
the thread counts and the git commit. Timings are only as good as the machine is quiet: the record says how
loaded it was. Every call starts after a pause (`PAUSE_S`): OpenBLAS's worker threads (numpy, the peers'
backend) keep spinning for about 0.1-0.2 s after a call, and a multi-threaded torch call started in that window
shares the cores with them (genbench's KID at 64-d, 2 threads: 0.13 s right after torch-fidelity's KID, 0.04 s
after a 0.2 s pause), so without it each candidate would be timed partly against the previous one's threads.

Run:  make bench-metrics                                    (installs the `bench` extra: torch-fidelity)
      python benchmarks/metrics_vs_peers.py --quick           (small sizes, seconds; *_quick.* files)
      python benchmarks/metrics_vs_peers.py --cases kid_64,pr_2048 --repeats 5
Writes results/benchmarks/metrics_vs_peers.json and .md (or metrics_vs_peers_quick.*).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from threadpoolctl import threadpool_limits

from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.kid import kid_estimate, subset_mmd2
from genbench.metrics.precision_recall import precision_recall
from genbench.results import atomic_write_text, device_name, git_commit, package_versions

try:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric
except ImportError:  # the `bench` extra is missing: say how to get it
    sys.exit("torch-fidelity is not installed: pip install -e '.[bench]' (or make bench-metrics)")

SEED = 0
PAUSE_S = 0.5  # idle time before each timed call: the previous call's spinning BLAS threads go to sleep
KID_SEED = 1


@dataclass
class Case:
    """One benchmark row: a metric on one pair of feature arrays."""

    name: str
    metric: str  # fid | kid | pr
    n: int
    d: int
    n_gen: int | None = None  # defaults to n
    subsets: int = 100
    subset_size: int = 1000
    k: int = 3
    precision: str = "float64"  # KID's kernel precision (genbench.metrics.kid.PRECISIONS)

    def describe(self) -> str:
        size = f"{self.n_gen or self.n} + {self.n} x {self.d}-d"
        if self.metric == "kid":
            return f"{self.subsets} subsets x {self.subset_size} of {size}, {self.precision} kernels"
        return f"k={self.k}, {size}" if self.metric == "pr" else size


FULL = [
    Case("fid_regular", "fid", 3000, 2048),
    Case("fid_singular", "fid", 500, 2048),
    Case("kid_64", "kid", 3000, 64),
    Case("kid_2048", "kid", 3000, 2048),
    Case("kid_64_f32", "kid", 3000, 64, precision="float32"),
    Case("kid_2048_f32", "kid", 3000, 2048, precision="float32"),
    Case("pr_64", "pr", 3000, 64),
    Case("pr_2048", "pr", 5000, 2048),
]
QUICK = [
    Case("fid_regular", "fid", 600, 256),
    Case("fid_singular", "fid", 100, 256),
    Case("kid_64", "kid", 600, 64, subsets=20, subset_size=200),
    Case("kid_2048", "kid", 600, 256, subsets=20, subset_size=200),
    Case("kid_64_f32", "kid", 600, 64, subsets=20, subset_size=200, precision="float32"),
    Case("kid_2048_f32", "kid", 600, 256, subsets=20, subset_size=200, precision="float32"),
    Case("pr_64", "pr", 600, 64),
    Case("pr_2048", "pr", 800, 256),
]


def features(n: int, d: int, seed: int, shift: float) -> np.ndarray:
    """n correlated Gaussian feature vectors (float32), mean `shift` per coordinate."""
    rng = np.random.default_rng(seed)
    mixing = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    return rng.standard_normal((n, d), dtype=np.float32) @ mixing + np.float32(shift)


def tf_subsets(n_gen: int, n_ref: int, subsets: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The subsets torch-fidelity's KID draws (RandomState(seed), gen then ref per subset)."""
    rng = np.random.RandomState(seed)
    gen_rows, ref_rows = np.empty((subsets, size), np.int64), np.empty((subsets, size), np.int64)
    for s in range(subsets):
        gen_rows[s] = rng.choice(n_gen, size, replace=False)
        ref_rows[s] = rng.choice(n_ref, size, replace=False)
    return gen_rows, ref_rows


def candidates(case: Case, gen: np.ndarray, ref: np.ndarray) -> dict[str, Callable[[], Any]]:
    """name -> a call from feature arrays to the metric's value(s), for genbench and the peers."""
    gen_t, ref_t = torch.from_numpy(gen), torch.from_numpy(ref)
    if case.metric == "fid":

        def pytorch_fid() -> float:
            stats = [(x.astype(np.float64).mean(0), np.cov(x, rowvar=False)) for x in (gen, ref)]
            return float(calculate_frechet_distance(*stats[0], *stats[1]))

        def torch_fidelity() -> float:
            stats = [fid_features_to_statistics(x) for x in (gen_t, ref_t)]
            return fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"]

        return {
            "genbench": lambda: frechet_distance_features(gen, ref),
            "pytorch_fid": pytorch_fid,
            "torch_fidelity": torch_fidelity,
        }
    if case.metric == "kid":
        kwargs = {"kid_subsets": case.subsets, "kid_subset_size": case.subset_size, "rng_seed": KID_SEED}
        return {
            "genbench": lambda: (
                kid_estimate(gen, ref, case.subsets, case.subset_size, seed=SEED, precision=case.precision).mean
            ),
            "torch_fidelity": lambda: kid_features_to_metric(gen_t, ref_t, verbose=False, **kwargs)[
                "kernel_inception_distance_mean"
            ],
        }
    kwargs = {"prc_neighborhood": case.k, "prc_batch_size": 10000, "save_cpu_ram": False, "verbose": False}

    def tf_pr() -> tuple[float, float]:
        out = prc_features_to_metric(gen_t, ref_t, **kwargs)  # their convention: input 1 is generated
        return out["precision"], out["recall"]

    return {"genbench": lambda: precision_recall(ref, gen, k=case.k), "torch_fidelity": tf_pr}


def agreement(case: Case, gen: np.ndarray, ref: np.ndarray, values: dict[str, Any]) -> dict[str, Any]:
    """How far the peers' values are from genbench's, and whether that is within the case's tolerance."""
    out: dict[str, Any] = {}
    if case.metric == "fid":
        ours = values["genbench"]
        # the peers take sqrtm / eigvals of a singular product: ~1e-4 relative error there (pytorch-fid adds
        # 1e-6 to the diagonal when its sqrtm fails); regular inputs agree to round-off
        tol = 1e-3 if case.n <= case.d else 1e-6
        for peer in ("pytorch_fid", "torch_fidelity"):
            rel = abs(values[peer] - ours) / abs(ours)
            out[peer] = {"rel_diff": rel, "tolerance": tol, "agree": rel <= tol}
        same = {"genbench": frechet_distance_features(gen, gen)}
        same |= {peer: fn() for peer, fn in candidates(case, gen, gen).items() if peer != "genbench"}
        out["identical_sets_fid"] = same  # exactly 0 in exact arithmetic
    elif case.metric == "kid":
        # genbench's kernels on torch-fidelity's own subsets: equal up to the peer's float32 kernels
        subsets = tf_subsets(len(gen), len(ref), case.subsets, case.subset_size, KID_SEED)
        ours = float(subset_mmd2(gen, ref, *subsets, precision=case.precision).mean())
        diff = abs(values["torch_fidelity"] - ours)
        out["torch_fidelity"] = {"genbench_on_same_subsets": ours, "abs_diff": diff, "tolerance": 1e-5}
        out["torch_fidelity"]["agree"] = diff <= 1e-5
        if case.precision != "float64":  # the fast kernels against genbench's exact ones, on genbench's subsets
            exact = kid_estimate(gen, ref, case.subsets, case.subset_size, seed=SEED).mean
            diff = abs(values["genbench"] - exact)
            out["genbench_float64"] = {"value": exact, "abs_diff": diff, "tolerance": 1e-7, "agree": diff <= 1e-7}
    else:
        # torch-fidelity decides in float32 (cdist): a point on a ball's edge may flip; count the flips
        n = len(gen)
        flips = [round(abs(a - b) * n) for a, b in zip(values["genbench"], values["torch_fidelity"], strict=True)]
        out["torch_fidelity"] = {"points_differing": flips, "tolerance": 2, "agree": max(flips) <= 2}
    return out


def run_case(case: Case, repeats: int, threads: int) -> dict[str, Any]:
    gen = features(case.n_gen or case.n, case.d, SEED, shift=0.05)
    ref = features(case.n, case.d, SEED + 1, shift=0.0)
    calls = candidates(case, gen, ref)
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    values: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    with threadpool_limits(threads), warnings.catch_warnings():
        torch.set_num_threads(threads)
        warnings.simplefilter("ignore")  # scipy's sqrtm(disp=...) deprecation and singular-matrix warnings
        for rep in range(repeats):
            for name, fn in calls.items():  # alternate, so load changes hit every candidate alike
                time.sleep(PAUSE_S)
                start, start_cpu = time.perf_counter(), time.process_time()
                values[name] = fn()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                print(f"  {case.name} threads={threads} rep {rep + 1}/{repeats} {name:>15}: {times[name][-1]:8.3f} s")
        agree = agreement(case, gen, ref, values)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "case": case.name,
        "metric": case.metric,
        "description": case.describe(),
        "threads": threads,
        "times_s": times,
        "cpu_times_s": cpu,
        "median_s": medians,
        "speedup_vs": {name: medians[name] / medians["genbench"] for name in medians if name != "genbench"},
        "values": values,
        "agreement": agree,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }


def row_agrees(row: dict[str, Any]) -> bool:
    return all(v["agree"] for v in row["agreement"].values() if isinstance(v, dict) and "agree" in v)


def markdown(record: dict[str, Any]) -> str:
    lines = [
        f"# genbench metrics against pytorch-fid and torch-fidelity ({record['date']})",
        "",
        f"Machine: {record['device']}, {record['cpu_count']} cores; commit `{record['git_commit']}`; median of "
        f"{record['repeats']}, each call after a {record['pause_s']} s pause (idle BLAS threads); seconds from "
        "feature arrays to value. Ratio = peer time / genbench time.",
        "Load = 1-minute load average before / after the case (timings are trustworthy below the core count).",
        "",
        "| metric | case | threads | genbench | pytorch-fid | torch-fidelity | ratio | values agree | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in record["rows"]:
        med, ratio = row["median_s"], row["speedup_vs"]
        peers = [p for p in ("pytorch_fid", "torch_fidelity") if p in med]
        cells = {p: f"{med[p]:.3f} s" if p in med else "–" for p in ("pytorch_fid", "torch_fidelity")}
        ratios = " / ".join(f"{ratio[p]:.1f}x" for p in peers)
        agree = row_agrees(row)
        load = row["load_average_1min"]
        lines.append(
            f"| {row['metric']} | {row['description']} | {row['threads']} | {med['genbench']:.3f} s | "
            f"{cells['pytorch_fid']} | {cells['torch_fidelity']} | {ratios} | {'yes' if agree else 'NO'} | "
            f"{load['before']:.1f} / {load['after']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes that finish in seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = every core")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--out-dir", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()

    cases = QUICK if args.quick else FULL
    if args.cases:
        wanted = set(args.cases.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            sys.exit(f"unknown cases {sorted(unknown)}; choose from {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in wanted]
    cores = os.cpu_count() or 1
    thread_counts = sorted({cores if t == "all" else int(t) for t in args.threads.split(",")})
    rows = [run_case(case, args.repeats, threads) for threads in thread_counts for case in cases]

    versions = package_versions()
    for name in ("torch-fidelity", "pytorch-fid", "threadpoolctl"):
        versions[name] = metadata.version(name)
    record = {
        "benchmark": "metrics_vs_peers",
        "command": " ".join(["python", "benchmarks/metrics_vs_peers.py", *sys.argv[1:]]),
        "quick": args.quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "packages": versions,
        "device": device_name("cpu"),
        "cpu_count": cores,
        "thread_counts": thread_counts,
        "repeats": args.repeats,
        "pause_s": PAUSE_S,
        "rows": rows,
    }
    stem = "metrics_vs_peers_quick" if args.quick else "metrics_vs_peers"
    atomic_write_text(args.out_dir / f"{stem}.json", json.dumps(record, indent=2, default=float) + "\n")
    table = markdown(record)
    atomic_write_text(args.out_dir / f"{stem}.md", table)
    print(table)
    print(f"wrote {args.out_dir / stem}.json and .md")
    disagreeing = sorted({row["case"] for row in rows if not row_agrees(row)})
    if disagreeing:
        sys.exit(f"values disagree in {disagreeing}")


if __name__ == "__main__":
    main()
