"""Figures of the comparison report, one set per dataset, each as PNG and PDF.

Sample grids side by side, throughput against FID (log x), bits/dim bars that show each number's kind, and
training curves (mean over seeds with a min-max band). Figures are drawn on `matplotlib.figure.Figure`
directly (Agg canvas, no pyplot state), so drawing never needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Patch

from genbench.report import Group, likelihood_cells, loss_curve, sample_cell, throughput_cell, uniform
from genbench.results import atomic_write

SAMPLES_NAME = "samples.png"  # written into every run directory by the pipeline
KIND_STYLE = {  # bar face and hatch per likelihood kind
    "exact": ("tab:blue", ""),
    "lower_bound": ("tab:orange", "//"),
    "estimate": ("tab:gray", ".."),
}
KIND_LABEL = {"exact": "exact (=)", "lower_bound": "upper bound on bits/dim (≤)", "estimate": "estimate (≈)"}


def samples_figure(groups: list[Group]) -> Figure | None:
    """Each model's sample grid from its first finished seed, side by side (5 per row)."""
    found = []
    for g in groups:
        run = next((r for r in g.ok_runs if (r.path / SAMPLES_NAME).exists()), None)
        found.append((g, run))
    if not any(run for _, run in found):
        return None
    cols = min(len(found), 5)
    rows = math.ceil(len(found) / cols)
    fig = Figure(figsize=(2.6 * cols, 2.9 * rows))
    for i, (g, run) in enumerate(found):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if run is None:
            ax.text(0.5, 0.5, "no samples\n(" + ("failed" if g.all_failed else "not written") + ")", ha="center")
            ax.set_title(g.model)
            continue
        ax.imshow(imread(run.path / SAMPLES_NAME), cmap="gray", interpolation="nearest")
        ax.set_title(f"{g.model} (seed {run.record['seed']})")
    fig.suptitle(f"Samples on {groups[0].dataset}")
    return fig


def throughput_fid_figure(groups: list[Group]) -> Figure | None:
    """Mean FID against mean samples/s per model, error bars = std over seeds; log x."""
    points = [(g, throughput_cell(g), sample_cell(g, "fid")) for g in groups]
    points = [(g, t, f) for g, t, f in points if t.mean is not None and f.mean is not None]
    if not points:
        return None
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    for g, t, f in points:
        ax.errorbar(t.mean, f.mean, xerr=t.std or 0, yerr=f.std or 0, fmt="o", capsize=3)
        ax.annotate(g.model, (t.mean, f.mean), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    feats = uniform([g for g, _, _ in points], lambda g: sample_cell(g, "fid").note)
    ax.set_xlabel("samples / s (fastest mode, largest batch)")
    ax.set_ylabel(f"FID ({feats} features), lower is better" if feats else "FID, lower is better")
    ax.set_title(f"Speed against sample quality on {groups[0].dataset}")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def bits_per_dim_figure(groups: list[Group]) -> Figure | None:
    """The main bits/dim per model as a bar styled by kind (▼ on bounds: the truth is at or below),
    the other methods as labelled dots."""
    cells = [likelihood_cells(g) for g in groups]
    if not any(cells):
        return None
    fig = Figure(figsize=(1.3 * len(groups) + 2.5, 4))
    ax = fig.add_subplot()
    for x, cs in enumerate(cells):
        if not cs:
            ax.text(x, 0, "n/a", ha="center", va="bottom")
            continue
        main = cs[0]
        color, hatch = KIND_STYLE.get(main.kind, ("tab:gray", ""))
        ax.bar(x, main.mean, yerr=main.std or 0, color=color, hatch=hatch, edgecolor="black", capsize=4, alpha=0.8)
        if main.kind == "lower_bound":
            ax.plot(x, main.mean, marker="v", color="black", markersize=8)
        for other in cs[1:]:
            ax.plot(x + 0.25, other.mean, marker="o", color="black", markersize=4)
            ax.annotate(other.note, (x + 0.25, other.mean), fontsize=7, textcoords="offset points", xytext=(4, 0))
        ax.annotate(main.note, (x, main.mean), ha="center", textcoords="offset points", xytext=(0, 10), fontsize=8)
    ax.set_xticks(range(len(groups)), [g.model for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    top = max(c.mean + (c.std or 0) for cs in cells for c in cs)
    if top > 0:
        ax.set_ylim(0, 1.2 * top)  # room for the labels above the bars
    ax.set_ylabel("bits / dim (lower is better)")
    ax.set_title(f"Negative log-likelihood on {groups[0].dataset} (dots: other methods)")
    handles = [Patch(facecolor=c, hatch=h, edgecolor="black", label=KIND_LABEL[k]) for k, (c, h) in KIND_STYLE.items()]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def curves_figure(groups: list[Group]) -> Figure | None:
    """Training loss per model: mean over seeds on the steps they share, with a min-max band."""
    found = [(g, [c for c in map(loss_curve, g.ok_runs) if c]) for g in groups]
    found = [(g, cs) for g, cs in found if cs]
    if not found:
        return None
    cols = min(len(found), 3)
    rows = math.ceil(len(found) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    for i, (g, curves) in enumerate(found):
        ax = fig.add_subplot(rows, cols, i + 1)
        shared = sorted(set.intersection(*(set(steps) for _, steps, _ in curves)))
        if len(curves) > 1 and len(shared) > 1:
            per_seed = [[dict(zip(steps, ys, strict=True))[s] for s in shared] for _, steps, ys in curves]
            lo, hi = ([f(col) for col in zip(*per_seed, strict=True)] for f in (min, max))
            mean = [sum(col) / len(col) for col in zip(*per_seed, strict=True)]
            ax.fill_between(shared, lo, hi, alpha=0.3, label="min-max over seeds")
            ax.plot(shared, mean, label=f"mean of {len(curves)} seeds", marker="o" if len(shared) < 5 else None)
            ax.legend(fontsize=7)
        else:
            for _, steps, ys in curves:
                ax.plot(steps, ys, linewidth=1, marker="o" if len(steps) < 5 else None)
        ax.set_title(f"{g.model} ({len(curves)} seed{'s' * (len(curves) > 1)})")
        ax.set_xlabel("step")
        ax.set_ylabel(curves[0][0])
    fig.suptitle(f"Training curves on {groups[0].dataset}")
    fig.tight_layout()
    return fig


FIGURES: tuple[tuple[str, str, Callable[[list[Group]], Figure | None]], ...] = (
    ("samples", "Sample grids", samples_figure),
    ("throughput_vs_fid", "Throughput against FID", throughput_fid_figure),
    ("bits_per_dim", "Bits/dim by kind", bits_per_dim_figure),
    ("training_curves", "Training curves", curves_figure),
)


def save(fig: Figure, path: Path) -> None:
    """Save through a temporary file, then rename, like every other file genbench writes."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight"))


def draw_all(groups: list[Group], out: Path, dataset: str) -> dict[str, str]:
    """Draw every figure that the records can feed; returns {file stem: title} of those written."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, title, draw in FIGURES:
        fig = draw(groups)
        if fig is None:
            continue
        stem = f"{name}_{dataset}"
        for ext in ("png", "pdf"):
            save(fig, out / f"{stem}.{ext}")
        written[stem] = f"{title} on {dataset}"
    return written
