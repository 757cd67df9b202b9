"""Speed report: tables (Markdown, CSV), a log-log throughput plot and a ratio table from speed records.

Reads the `speed.json` records that `genbench speed` (genbench/speed.py) writes, so the report of a folder
can be rebuilt at any time, and records from several runs (one model each) can be put side by side. The ratio
table answers the seed's question -- how much faster does a GAN (Goodfellow et al. 2014) sample than a pixel-by-pixel
model such as PixelCNN (van den Oord et al. 2016), naive or cached (Ramachandran et al. 2017) -- per device and shape.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.report.figures import throughput_plot
from genbench.report.records import SPEED_RECORD, load_speed_records
from genbench.results import atomic_write_text

TABLE_COLUMNS = (
    "model", "mode", "dtype", "compile", "batch_size", "status", "throughput", "latency_median_s", "latency_min_s",
    "latency_max_s", "first_call_s", "repeats", "warmup", "cpu_time_median_s", "load_avg_1m", "peak_memory_bytes",
    "memory_kind", "flops_per_sample", "achieved_flops", "fraction_of_peak", "weights", "dataset", "shape", "device",
    "torch", "threads", "error",
)  # fmt: skip


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def label_lines(points: list[dict[str, Any]]) -> None:
    """Give each point its line's name, `point["line"]`: 'pixelcnn (cached)', 'gan', 'dbm (default)', 'gan bf16'.

    The mode is named unless it is the only mode, `default`, of its model; dtype and compile when not plain.
    """
    modes: dict[str, set[str]] = {}
    for p in points:
        modes.setdefault(p["model"], set()).add(p["mode"])
    for p in points:
        label = p["model"] if modes[p["model"]] == {"default"} else f"{p['model']} ({p['mode']})"
        label += "" if p["dtype"] == "fp32" else f" {p['dtype']}"
        p["line"] = label + (" compiled" if p.get("compile") else "")


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


def _relative(value: float) -> str:
    """A throughput ratio as read in "gan : pixelcnn = 1 : 1/300": '1/300' for slower, '4.1' for faster."""
    return _fmt(value) if value >= 1 else f"1/{_fmt(1 / value)}"


def _headline(order: list[str], ok: dict[str, dict[int, dict[str, Any]]], reference: str) -> str:
    """At the largest batch every line reached: the ratio line and a table with CPU-time ratios and best batches."""
    common = [b for b in sorted(ok[reference]) if all(b in ok[k] for k in order)]
    if not common:
        return "No batch size was measured for every line.\n\n"
    b = common[-1]
    thr = {k: ok[k][b]["throughput"] for k in order}
    rest = sorted((k for k in order if k != reference), key=lambda k: -thr[k])
    text = f"At batch {b} (the largest every line reached), throughput {reference} : {' : '.join(rest)}\n"
    text += f"= 1 : {' : '.join(_relative(thr[k] / thr[reference]) for k in rest)}\n\n"
    text += f"| line | samples/s at batch {b} | times slower than {reference} | the same by process CPU time "
    text += "| best samples/s (batch) |\n|---|---|---|---|---|\n"
    ref_cpu = ok[reference][b].get("cpu_time_median_s")
    for k in [reference, *rest]:
        p, best = ok[k][b], max(ok[k].values(), key=lambda q: q["throughput"])
        cpu = None if not (ref_cpu and p.get("cpu_time_median_s")) else p["cpu_time_median_s"] / ref_cpu
        text += f"| {k} | {_fmt(thr[k])} | {_fmt(thr[reference] / thr[k])} | {_fmt(cpu)} "
        text += f"| {_fmt(best['throughput'])} ({best['batch_size']}) |\n"
    return text + "\n"


def ratio_table(points: list[dict[str, Any]], reference: str) -> str:
    """How many times slower than the reference model each line samples, for one device, shape, dtype and compile.

    Wall-clock ratios, and on a CPU process-CPU-time ratios too (a busy shared host inflates wall times).
    """
    p0 = points[0]
    variant = p0["dtype"] + (", compiled" if p0.get("compile") else "")
    title = f"### Against {reference} at {p0['shape']} on {p0['device']}, {variant}\n\n"
    lines: dict[str, dict[int, dict[str, Any]]] = {}
    for p in points:
        lines.setdefault(p["line"], {})[p["batch_size"]] = p
    ok = {k: {b: p for b, p in v.items() if p["status"] == "ok"} for k, v in lines.items()}
    ref_line = next((k for k in lines if lines[k] and next(iter(lines[k].values()))["model"] == reference), None)
    if ref_line is None or not ok[ref_line]:
        return f"{title}no `{reference}` measured here: no ratios.\n"
    order = sorted(lines, key=lambda k: -max((p["throughput"] for p in ok[k].values()), default=0.0))
    ref = ok[ref_line]
    sizes = sorted({p["batch_size"] for p in points})
    text = title + _headline(order, ok, ref_line)
    text += f"{reference} throughput / line throughput, per batch size (times slower than {reference}):\n\n"
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


def reference_model(records: list[dict[str, Any]]) -> str | None:
    """The model the ratios compare against, read from what the records say the models are: the first
    adversarial (one-pass, the seed's subject) model, else the one with the fewest sequential network
    evaluations per sample in its default mode."""
    measured = [r for r in records if r.get("points")]
    for r in measured:
        if (r.get("model_info") or {}).get("family") == "adversarial":
            return r["model"]

    def evaluations(r: dict[str, Any]) -> float:
        info = r.get("model_info") or {}
        return (info.get("network_evaluations") or {}).get(info.get("default_mode"), float("inf"))

    return min(measured, key=evaluations)["model"] if measured else None


def speed_report(folder: Path | str, reference: str | None = None, ratios: bool = True) -> dict[str, Path]:
    """Tables, plot and ratio table from every speed record under `folder`; returns what it wrote.

    Args:
        folder: a folder holding `speed.json` files (at any depth).
        reference: the model the ratio table compares against; None: `reference_model` picks it.
        ratios: write the ratio table.
    """
    folder = Path(folder)
    records = load_speed_records(folder)
    reference = reference or reference_model(records)
    points = [p for r in records for p in r["points"]]
    if not points:
        raise GenbenchError(f"no measured points in any {SPEED_RECORD} under {folder}; run `genbench speed` first")
    skipped = "".join(f"\nNot measured: {r['model']}: {r.get('error')}\n" for r in records if not r["points"])
    label_lines(points)
    written = {"csv": folder / "speed_table.csv", "md": folder / "speed_table.md", "png": folder / "speed.png"}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(points)
    atomic_write_text(written["csv"], buffer.getvalue())
    envs = sorted({f"{p['device']}, torch {p['torch']}, {p['threads']} threads" for p in points})
    atomic_write_text(written["md"], f"# Sampling speed\n\n{'; '.join(envs)}\n\n" + markdown_table(points) + skipped)
    throughput_plot(points, written["png"])
    if ratios and reference:
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for p in points:
            groups.setdefault((p["device"], p["shape"], p["dtype"], p.get("compile", False)), []).append(p)
        text = "# Throughput ratios\n\n" + "\n".join(ratio_table(g, reference) for g in groups.values()) + skipped
        written["ratios"] = folder / "speed_ratios.md"
        atomic_write_text(written["ratios"], text)
    return written
