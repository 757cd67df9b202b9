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
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.results import atomic_write_text

SPEED_RECORD = "speed.json"


TABLE_COLUMNS = (
    "model", "mode", "dtype", "compile", "batch_size", "status", "throughput", "latency_median_s", "latency_min_s",
    "latency_max_s", "first_call_s", "repeats", "peak_memory_bytes", "memory_kind", "flops_per_sample",
    "achieved_flops", "fraction_of_peak", "weights", "dataset", "shape", "device", "torch", "threads", "error",
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


def markdown_table(points: list[dict[str, Any]]) -> str:
    head = "| model | mode | dtype | compile | batch | status | samples/s | s/batch (min–max) | first call s | "
    head += "peak MiB | MFLOP/sample | GFLOP/s | % of peak |\n" + "|---" * 13 + "|\n"
    rows = []
    for p in points:
        mem = None if p.get("peak_memory_bytes") is None else p["peak_memory_bytes"] / 2**20
        lat = "–" if p["status"] != "ok" else f"{_fmt(p['latency_median_s'])} ({_fmt(p['latency_min_s'])}–"
        lat += "" if p["status"] != "ok" else f"{_fmt(p['latency_max_s'])})"
        cells = [
            p["model"], p["mode"], p["dtype"], _fmt(p.get("compile", False)), p["batch_size"],
            p["status"] if p["status"] == "ok" else f"{p['status']}: {p.get('error', '')}",
            _fmt(p.get("throughput")), lat, _fmt(p.get("first_call_s")), _fmt(mem),
            _fmt(None if p.get("flops_per_sample") is None else p["flops_per_sample"] / 1e6),
            _fmt(None if p.get("achieved_flops") is None else p["achieved_flops"] / 1e9),
            _fmt(None if p.get("fraction_of_peak") is None else 100 * p["fraction_of_peak"]),
        ]  # fmt: skip
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return head + "\n".join(rows) + "\n"


def ratio_table(points: list[dict[str, Any]], reference: str) -> str:
    """How many times the reference model's throughput each line's is, per batch size, for one device and shape."""
    ref = {p["batch_size"]: p for p in points if p["model"] == reference and p["status"] == "ok"}
    lines: dict[str, dict[int, dict[str, Any]]] = {}
    for p in points:
        lines.setdefault(line_label(p), {})[p["batch_size"]] = p
    ok = {k: {b: p for b, p in v.items() if p["status"] == "ok"} for k, v in lines.items()}
    order = sorted(lines, key=lambda k: -max((p["throughput"] for p in ok[k].values()), default=0.0))
    p0 = points[0]
    title = f"{' : '.join(order)} at {p0['shape']} on {p0['device']}"
    if not ref:
        return f"### {title}\n\nno `{reference}` record measured here: no ratios.\n"
    common = [b for b in sorted(ref) if all(b in ok[k] for k in order)]
    text = f"### {title}\n\n"
    if common:
        b = common[-1]
        thr = [ok[k][b]["throughput"] for k in order]
        text += f"At batch {b}: {' : '.join(f'{t:.4g}' for t in thr)} samples/s, "
        text += f"i.e. {' : '.join(_fmt(t / ref[b]['throughput']) for t in thr)} of {reference}'s throughput.\n\n"
    sizes = sorted({p["batch_size"] for p in points})
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


def throughput_plot(points: list[dict[str, Any]], path: Path) -> None:
    """Log-log throughput against batch size, one line per model, mode, dtype and compile variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[int, float]]] = {}
    for p in points:
        if p["status"] == "ok":
            lines.setdefault(line_label(p), []).append((p["batch_size"], p["throughput"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, xy in sorted(lines.items(), key=lambda kv: -max(t for _, t in kv[1])):
        xs, ys = zip(*sorted(xy), strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size (samples per call)", ylabel="throughput (samples/s)")
    devices = sorted({p["device"] for p in points})
    shapes = sorted({p["shape"] for p in points})
    ax.set_title(f"model.sample(n) throughput, {', '.join(shapes)} on {', '.join(devices)}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
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
    points = [p for r in load_speed_records(folder) for p in r["points"]]
    if not points:
        raise GenbenchError(f"no {SPEED_RECORD} under {folder}; run `genbench speed` first")
    written = {"csv": folder / "speed_table.csv", "md": folder / "speed_table.md", "png": folder / "speed.png"}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    atomic_write_text(written["csv"], buffer.getvalue())
    envs = sorted({f"{p['device']}, torch {p['torch']}, {p['threads']} threads" for p in points})
    atomic_write_text(written["md"], f"# Sampling speed\n\n{'; '.join(envs)}\n\n" + markdown_table(points))
    throughput_plot(points, written["png"])
    if reference:
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for p in points:
            groups.setdefault((p["device"], p["shape"], p["dtype"], p.get("compile", False)), []).append(p)
        text = "# Throughput ratios\n\n" + "\n".join(ratio_table(g, reference) for g in groups.values())
        written["ratios"] = folder / "speed_ratios.md"
        atomic_write_text(written["ratios"], text)
    return written
