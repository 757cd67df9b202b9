"""The Markdown summary and the plot of a `benchmarks/gpu_bench.py` record (gpu_bench.json), nothing else.

Every number comes from the record; a line that did not run says why. `python benchmarks/gpu_bench_summary.py DIR`
rewrites a folder's summary from its record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from genbench.metrics.speed_timing import peak_flops
from genbench.results import atomic_write_text

SUMMARY, PLOT = "summary.md", "summary.png"


def _g(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_g(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _parts(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return record.get("parts", {})


def speed_rows(part: dict[str, Any]) -> list[list[Any]]:
    """One row per (model, mode, dtype): batch 1 and the largest batch that fitted."""
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for p in part.get("results", []):
        line = lines.setdefault((p["model"], p["mode"], p["dtype"]), {"points": [], "head": p})
        line["points"].append(p)
    rows = []
    for (model, mode, dtype), line in lines.items():
        ok = [p for p in line["points"] if p["status"] == "ok"]
        b1 = next((p for p in ok if p["batch_size"] == 1), None)
        big = next((p for p in ok if p.get("largest")), None)
        traffic = line["head"].get("traffic") or {}
        us_per_op = None
        if b1 and traffic.get("ops"):
            us_per_op = 1e6 * b1["latency_median_s"] / traffic["ops"]
        failed = [p for p in line["points"] if p["status"] not in ("ok", "oom")]
        note = big.get("limited_by") if big else (failed[0].get("error", failed[0]["status"]) if failed else "–")
        rows.append(
            [
                model,
                mode,
                line["head"].get("network_evaluations"),
                dtype,
                b1["latency_median_s"] if b1 else None,
                b1["throughput"] if b1 else None,
                big["batch_size"] if big else None,
                big["throughput"] if big else None,
                note,
                traffic.get("ops"),
                us_per_op,
                f"{traffic.get('syncs', '–')}/{traffic.get('copies', '–')}",
            ]
        )
    return rows


def peak_rows(record: dict[str, Any]) -> list[list[Any]]:
    """Achieved FLOP/s of every one-pass sampler at its largest batch, against the device's peak for the dtype."""
    rows = []
    device = record.get("environment", {}).get("device", "")
    for name in ("speed_28", "speed_32"):
        for p in _parts(record).get(name, {}).get("results", []):
            if p["status"] == "ok" and p.get("largest") and p.get("flops_per_sample"):
                achieved = p["flops_per_sample"] * p["throughput"]
                peak = peak_flops(device, p["dtype"])
                rows.append(
                    [
                        p["model"],
                        p["shape"],
                        p["dtype"],
                        p["batch_size"],
                        p["flops_per_sample"],
                        p["throughput"],
                        achieved / 1e12,
                        None if peak is None else peak / 1e12,
                        None if peak is None else achieved / peak,
                    ]
                )
    return rows


def equivalent_rows(record: dict[str, Any]) -> list[list[Any]]:
    part = _parts(record).get("pixelcnn", {})
    equal = {
        (r["model"], r["shape"], r["mode"]): r["equal_fraction"]
        for r in part.get("results", [])
        if r.get("check") == "same samples"
    }
    timing = [r for r in part.get("results", []) if r.get("check") == "timing"]
    batch1 = {}
    for name in ("speed_28", "speed_32"):
        for p in _parts(record).get(name, {}).get("results", []):
            if p["status"] == "ok" and p["batch_size"] == 1 and p["dtype"] == "fp32":
                batch1[(p["model"], p["shape"], p["mode"])] = p["latency_median_s"]
    slowest = {}
    for r in timing:
        if r["status"] == "ok":
            key = (r["model"], r["shape"])
            slowest[key] = max(slowest.get(key, 0.0), r["latency_median_s"])
    rows = []
    for r in timing:
        key = (r["model"], r["shape"], r["mode"])
        ok = r["status"] == "ok"
        rows.append(
            [
                r["model"],
                r["shape"],
                r["mode"],
                equal.get(key),
                batch1.get(key),
                r["batch_size"],
                r["latency_median_s"] if ok else r["status"],
                slowest[(r["model"], r["shape"])] / r["latency_median_s"] if ok else None,
            ]
        )
    return rows


def train_rows(part: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for r in part.get("results", []):
        step = r.get("traffic", {})
        rows.append(
            [
                r["model"],
                r.get("status"),
                r.get("steps"),
                r.get("steps_per_s"),
                f"{_g(r.get('loss_first'))} → {_g(r.get('loss_last'))} ({r.get('loss_name', '–')})",
                r.get("finite"),
                (r.get("amp") or {}).get("status"),
                f"{step.get('syncs', '–')}/{step.get('copies', '–')}",
                step.get("ops"),
                step.get("cuda_sync_warnings"),
                r.get("error", ""),
            ]
        )
    return rows


def markdown(record: dict[str, Any]) -> str:
    env = record.get("environment", {})
    parts = _parts(record)
    title = f"# gpu-bench on {record.get('device', env.get('device'))}\n\n"
    if record.get("smoke"):
        title += (
            "**Smoke run: tiny networks and images on the CPU, to keep the script working. Not a measurement.**\n\n"
        )
    text = title + (
        f"Commit `{record.get('git_commit')}`, {record.get('started')}, torch {env.get('torch')}"
        f" (CUDA {env.get('cuda', '–')}), {env.get('threads')} CPU threads on {env.get('cpu_model')}; load average "
        f"{_g(record.get('load_avg_1m', {}).get('start'))} at the start, {_g(record.get('load_avg_1m', {}).get('end'))}"
        f" at the end; {_g(record.get('wall_s'))} s wall, finished by {record.get('finished_by', 'an interruption')}."
        " Speeds are random-weight models (speed does not depend on the weights), the median of the timed calls"
        " after a first call; syncs/copies count one batch-1 call.\n\n"
    )
    text += "## Time plan\n\n" + _table(
        ["part", "share s", "used s", "results", "skipped", "error"],
        [
            [
                n,
                p.get("share_s"),
                p.get("used_s"),
                len(p.get("results", [])),
                len(p.get("skipped", [])),
                p.get("error", ""),
            ]
            for n, p in parts.items()
        ],
    )
    header = [
        "model",
        "mode",
        "evals",
        "dtype",
        "b1 s/call",
        "b1 samples/s",
        "largest batch",
        "samples/s",
        "limited by",
        "ops/call",
        "µs/op",
        "syncs/copies",
    ]
    for name in ("speed_28", "speed_32"):
        if name in parts:
            shape = next((p["shape"] for p in parts[name].get("results", [])), name)
            text += f"\n## Sampling speed at {shape}\n\n" + _table(header, speed_rows(parts[name]))
    if "pixelcnn" in parts:
        text += "\n## Modes that draw the same samples (cached vs naive PixelCNN)\n\n" + _table(
            ["model", "size", "mode", "equal samples", "b1 s/call", "batch", "s/call", "speed-up vs slowest"],
            equivalent_rows(record),
        )
    if peak_rows(record):
        text += "\n## Achieved FLOP/s of one-pass samplers against the device's peak\n\n" + _table(
            [
                "model",
                "size",
                "dtype",
                "batch",
                "FLOPs/sample",
                "samples/s",
                "achieved TFLOP/s",
                "peak TFLOP/s",
                "fraction",
            ],
            peak_rows(record),
        )
    if "train" in parts:
        text += f"\n## Training on the device\n\nData: {parts['train'].get('data', '–')}.\n\n" + _table(
            [
                "model",
                "status",
                "steps",
                "steps/s",
                "loss first → last",
                "finite",
                "bf16 amp",
                "step syncs/copies",
                "step ops",
                "CUDA sync warnings",
                "error",
            ],
            train_rows(parts["train"]),
        )
    if "frechet" in parts:
        results = parts["frechet"].get("results", [])
        reference = next((r["value"] for r in results if r.get("route") == "pytorch_fid_cpu"), None)
        rows = [
            [r["route"], r["dim"], r["best_s"], f"{r['value']:.10g}"]
            + [None if reference is None else abs(r["value"] - reference) / abs(reference)]
            for r in results
            if r.get("check") == "frechet"
        ]
        dim = results[0]["dim"] if results else "–"
        text += f"\n## Fréchet distance of random {dim}-d statistics (1 call on the CPU, best of 3 on a GPU)\n\n"
        text += _table(["route", "dim", "best s", "value", "relative difference vs pytorch-fid"], rows)
        rows = [
            [r["dtype"], r["batch_size"], r.get("latency_median_s"), r.get("throughput"), r.get("error", "")]
            for r in results
            if r.get("check") == "inception_features"
        ]
        if rows:
            text += "\n## Inception features, 32x32x3 resized to 299 (random weights: timing only)\n\n"
            text += _table(["dtype", "batch", "s/batch", "images/s", "error"], rows)
    skipped = [f"- {n}: {s}" for n, p in parts.items() for s in p.get("skipped", [])]
    text += "\n## Skipped, and why\n\n" + ("\n".join(skipped) if skipped else "Nothing.") + "\n"
    return text


def plot(record: dict[str, Any], path: Path) -> Path | None:
    """Samples/s at batch 1 and at the largest batch, per line and size; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    parts = [(n, _parts(record)[n]) for n in ("speed_28", "speed_32") if n in _parts(record)]
    if not parts:
        return None
    fig, axes = plt.subplots(1, len(parts), figsize=(7 * len(parts), 6), squeeze=False)
    for ax, (name, part) in zip(axes[0], parts, strict=True):
        labels: list[str] = []
        for p in part.get("results", []):
            if p["status"] != "ok" or not (p["batch_size"] == 1 or p.get("largest")):
                continue
            label = f"{p['model']} ({p['mode']})"
            if label not in labels:
                labels.append(label)
            marker = (
                ("o" if p["batch_size"] == 1 else "s")
                if p["dtype"] == "fp32"
                else ("^" if p["batch_size"] == 1 else "D")
            )
            ax.scatter(
                p["throughput"], labels.index(label), marker=marker, color="C0" if p["dtype"] == "fp32" else "C1"
            )
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xscale("log")
        ax.set_xlabel("samples/s (o ^: batch 1; s D: largest batch; blue fp32, orange bf16)")
        ax.set_title(f"{name} on {record.get('device')}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write(record: dict[str, Any], out: Path) -> list[Path]:
    atomic_write_text(out / SUMMARY, markdown(record))
    written = [out / SUMMARY]
    png = plot(record, out / PLOT)
    return written + ([png] if png else [])


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    print(write(json.loads((folder / "gpu_bench.json").read_text()), folder))
