"""Speed report: tables (Markdown, CSV), a log-log throughput plot and a ratio table from speed records.

Reads the `speed.json` records that `genbench speed` (genbench/metrics/speed.py) writes, so the report of a folder
can be rebuilt at any time, and records from several runs (one model each) can be put side by side. The ratio
table answers the seed's question -- how much faster does a GAN (Goodfellow et al. 2014) sample than a pixel-by-pixel
model such as PixelCNN (van den Oord et al. 2016), naive or cached (Ramachandran et al. 2017) -- per device and shape.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.results import atomic_write_text

SPEED_RECORD = "speed.json"


TABLE_COLUMNS = (
    "model", "mode", "dtype", "compile", "batch_size", "status", "throughput", "latency_median_s", "latency_min_s",
    "latency_max_s", "first_call_s", "repeats", "warmup", "cpu_time_median_s", "load_avg_1m", "peak_memory_bytes",
    "memory_kind", "flops_per_sample", "achieved_flops", "fraction_of_peak", "weights", "dataset", "shape", "device",
    "torch", "threads", "error",
)  # fmt: skip


def load_speed_records(folder: Path | str) -> list[dict[str, Any]]:
    """Every speed record under `folder` (recursively), in path order."""
    records = []
    for path in sorted(Path(folder).rglob(SPEED_RECORD)):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise GenbenchError(f"cannot read speed record {path}: {err}") from err
    return records


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def line_label(point: dict[str, Any]) -> str:
    """'pixelcnn (cached)'; the mode is left out for single-mode models' 'default', dtype/compile when not plain."""
    label = point["model"] if point["mode"] == "default" else f"{point['model']} ({point['mode']})"
    if point["dtype"] != "fp32":
        label += f" {point['dtype']}"
    return label + (" compiled" if point.get("compile") else "")


def _scaled(point: dict[str, Any], key: str, scale: float) -> float | None:
    return None if point.get(key) is None else point[key] * scale


def _latency(p: dict[str, Any]) -> str:
    return f"{_fmt(p['latency_median_s'])} ({_fmt(p['latency_min_s'])}–{_fmt(p['latency_max_s'])})"


# (header, cell) of the Markdown table; a point that did not run shows its status and why in `status`.
MARKDOWN_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("model", lambda p: p["model"]),
    ("mode", lambda p: p["mode"]),
    ("dtype", lambda p: p["dtype"]),
    ("compile", lambda p: _fmt(p.get("compile", False))),
    ("batch", lambda p: p["batch_size"]),
    ("status", lambda p: p["status"] if p["status"] == "ok" else f"{p['status']}: {p.get('error', '')}"),
    ("samples/s", lambda p: _fmt(p.get("throughput"))),
    ("s/batch (min–max)", lambda p: _latency(p) if p["status"] == "ok" else "–"),
    ("CPU s/batch", lambda p: _fmt(p.get("cpu_time_median_s"))),
    ("first call s", lambda p: _fmt(p.get("first_call_s"))),
    ("repeats", lambda p: _fmt(p.get("repeats"))),
    ("peak MiB", lambda p: _fmt(_scaled(p, "peak_memory_bytes", 2**-20))),
    ("MFLOP/sample", lambda p: _fmt(_scaled(p, "flops_per_sample", 1e-6))),
    ("GFLOP/s", lambda p: _fmt(_scaled(p, "achieved_flops", 1e-9))),
    ("% of peak", lambda p: _fmt(_scaled(p, "fraction_of_peak", 100.0))),
    ("load", lambda p: _fmt(p.get("load_avg_1m"))),
)


def markdown_table(points: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(h for h, _ in MARKDOWN_COLUMNS) + " |\n" + "|---" * len(MARKDOWN_COLUMNS) + "|\n"
    rows = ["| " + " | ".join(str(cell(p)) for _, cell in MARKDOWN_COLUMNS) + " |" for p in points]
    return head + "\n".join(rows) + "\n"


def _summary(order: list[str], ok: dict[str, dict[int, dict[str, Any]]], ref: dict[int, dict[str, Any]]) -> str:
    """The ratio at the largest batch every line reached, each line at its best batch, and by CPU time on a CPU."""
    text = ""
    common = [b for b in sorted(ref) if all(b in ok[k] for k in order)]
    if common:
        b = common[-1]
        thr = [ok[k][b]["throughput"] for k in order]
        text += f"At batch {b}: {' : '.join(f'{t:.4g}' for t in thr)} samples/s "
        text += f"(= {' : '.join(_fmt(thr[0] / t) for t in thr)} as slow-downs against the first).\n"
        cpu = [ok[k][b].get("cpu_time_median_s") for k in order]
        if ok[order[0]][b]["device"].startswith("cpu") and all(cpu):
            # Wall times on a shared host move with its load; process CPU time moves much less.
            text += f"By process CPU time per batch at batch {b}: {' : '.join(_fmt(c) for c in cpu)} s "
            text += f"(= {' : '.join(_fmt(c / cpu[0]) for c in cpu)}).\n"
    best = {k: max(ok[k].values(), key=lambda p: p["throughput"]) for k in order if ok[k]}
    text += "Each at its best batch size: "
    text += ", ".join(f"{k} {best[k]['throughput']:.4g} samples/s (batch {best[k]['batch_size']})" for k in best)
    return text + ".\n\n"


def ratio_table(points: list[dict[str, Any]], reference: str) -> str:
    """How many times slower than the reference model each line samples, per batch size, for one device and shape."""
    ref = {p["batch_size"]: p for p in points if p["model"] == reference and p["status"] == "ok"}
    lines: dict[str, dict[int, dict[str, Any]]] = {}
    for p in points:
        lines.setdefault(line_label(p), {})[p["batch_size"]] = p
    ok = {k: {b: p for b, p in v.items() if p["status"] == "ok"} for k, v in lines.items()}
    order = sorted(lines, key=lambda k: -max((p["throughput"] for p in ok[k].values()), default=0.0))
    title = f"### {' : '.join(order)} at {points[0]['shape']} on {points[0]['device']}\n\n"
    if not ref:
        return f"{title}no `{reference}` measured here: no ratios.\n"
    sizes = sorted({p["batch_size"] for p in points})
    text = title + _summary(order, ok, ref)
    text += f"{reference} throughput / line throughput (how many times slower than {reference}):\n\n"
    text += "| line | " + " | ".join(f"batch {b}" for b in sizes) + " |\n" + "|---" * (len(sizes) + 1) + "|\n"
    for k in order:
        cells = []
        for b in sizes:
            p = lines[k].get(b)
            if p is None or b not in ref:
                cells.append("–")
            elif p["status"] != "ok":
                cells.append(f"n/a: {p['status']}")
            else:
                cells.append(_fmt(ref[b]["throughput"] / p["throughput"]))
        text += f"| {k} | " + " | ".join(cells) + " |\n"
    return text


def _draw_lines(
    ax: Any, points: list[dict[str, Any]], value: Callable[[dict[str, Any]], float], order: list[str]
) -> None:
    """One line per label, coloured by its place in `order` so both panels agree."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for p in points:
        if p["status"] == "ok":
            lines.setdefault(line_label(p), []).append((p["batch_size"], value(p)))
    for i, label in enumerate(order):
        xs, ys = zip(*sorted(lines[label]), strict=True)
        ax.plot(xs, ys, marker="o", label=label, color=f"C{i % 10}", linestyle="-" if i < 10 else "--")
    ax.set(xscale="log", yscale="log", xlabel="batch size (samples per call)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def throughput_plot(points: list[dict[str, Any]], path: Path) -> None:
    """Log-log throughput against batch size, one line per model, mode, dtype and compile variant.

    On a CPU a second panel shows samples per process-CPU second, which a busy shared host distorts much less.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    on_cpu = all(p["device"].startswith("cpu") and p.get("cpu_time_median_s") for p in points if p["status"] == "ok")
    best: dict[str, float] = {}
    for p in points:
        if p["status"] == "ok":
            best[line_label(p)] = max(best.get(line_label(p), 0.0), p["throughput"])
    order = sorted(best, key=lambda k: -best[k])  # legend from fastest to slowest
    fig, axes = plt.subplots(1, 2 if on_cpu else 1, figsize=(12 if on_cpu else 7, 4.5), squeeze=False)
    _draw_lines(axes[0, 0], points, lambda p: p["throughput"], order)
    axes[0, 0].set_ylabel("throughput (samples per wall-clock second)")
    if on_cpu:
        _draw_lines(axes[0, 1], points, lambda p: p["batch_size"] / p["cpu_time_median_s"], order)
        axes[0, 1].set_ylabel("samples per process-CPU second")
    devices = ", ".join(sorted({p["device"] for p in points}))
    shapes = ", ".join(sorted({p["shape"] for p in points}))
    fig.suptitle(f"model.sample(n) throughput, {shapes} on {devices}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def speed_report(folder: Path | str, reference: str | None = "gan") -> dict[str, Path]:
    """Tables, plot and ratio table from every speed record under `folder`; returns what it wrote.

    Args:
        folder: a folder holding `speed.json` files (at any depth).
        reference: the model the ratio table compares against (None: no ratio table).
    """
    folder = Path(folder)
    records = load_speed_records(folder)
    points = [p for r in records for p in r["points"]]
    if not points:
        raise GenbenchError(f"no measured points in any {SPEED_RECORD} under {folder}; run `genbench speed` first")
    skipped = "".join(f"\nNot measured: {r['model']}: {r.get('error')}\n" for r in records if not r["points"])
    written = {"csv": folder / "speed_table.csv", "md": folder / "speed_table.md", "png": folder / "speed.png"}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    atomic_write_text(written["csv"], buffer.getvalue())
    envs = sorted({f"{p['device']}, torch {p['torch']}, {p['threads']} threads" for p in points})
    atomic_write_text(written["md"], f"# Sampling speed\n\n{'; '.join(envs)}\n\n" + markdown_table(points) + skipped)
    throughput_plot(points, written["png"])
    if reference:
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for p in points:
            groups.setdefault((p["device"], p["shape"], p["dtype"], p.get("compile", False)), []).append(p)
        text = "# Throughput ratios\n\n" + "\n".join(ratio_table(g, reference) for g in groups.values()) + skipped
        written["ratios"] = folder / "speed_ratios.md"
        atomic_write_text(written["ratios"], text)
    return written
