"""Every figure genbench draws, as PNG (and PDF for the report's): the one plotting module.

* A run's own figures, drawn by the pipeline: its sample grid (`save_sample_grid`) and training curve
  (`save_curve_plot`).
* The comparison report's figures, one set per dataset: sample grids side by side, throughput against FID of the
  same sampling mode (log x), bits/dim bars that show each number's kind, sample quality and speed against the
  number of network evaluations for models whose sampling mode changes the samples, and training curves
  (mean over seeds with a min-max band).
* The speed report's throughput against batch size (`throughput_plot`).

Figures are drawn on `matplotlib.figure.Figure` directly (Agg canvas, no pyplot state), so drawing never needs a
display and never leaks figures.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import Patch
from torchvision.utils import save_image

from genbench.report import claims
from genbench.report.records import Group, loss_curve
from genbench.report.tables import likelihood_cells, quality_cell, table_features, throughput_cell
from genbench.results import atomic_write

MIN_GRID_PIXELS = 32  # small images (8x8 digits) are upscaled so a grid is readable at a glance


# ----------------------------------------------------------------------------- a run's figures


def save_sample_grid(samples: torch.Tensor, path: Path, data: Any) -> None:
    """Images as a grid PNG; toy 2-D samples as a scatter over the test data (`data` a genbench Dataset)."""
    if data.spec.is_image:
        images = samples.clamp(0, 1).float()
        height = images.shape[-1]
        if height < MIN_GRID_PIXELS:
            images = F.interpolate(images, scale_factor=MIN_GRID_PIXELS // height, mode="nearest")
        atomic_write(path, lambda tmp: save_image(images, tmp, nrow=int(len(images) ** 0.5), padding=2, pad_value=0.5))
        return
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    test = data.test[:2000].numpy()
    ax.scatter(test[:, 0], test[:, 1], s=2, c="0.7", label="data")
    pts = samples.numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=4, c="C3", label="model")
    ax.set_xlim(*data.spec.value_range)
    ax.set_ylim(*data.spec.value_range)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    save(fig, path, dpi=120)


def save_curve_plot(curve_csv: Path, path: Path, title: str) -> None:
    """One panel per logged scalar against the step."""
    if not curve_csv.exists():
        return
    with open(curve_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k != "step"]
    steps = [float(r["step"]) for r in rows]
    fig = Figure(figsize=(3.2 * len(keys), 2.6))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        ax.plot(steps, [float(r[key]) for r in rows], lw=1)
        ax.set_xlabel("step")
        ax.set_title(key, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, path, dpi=110)


# ----------------------------------------------------------------------------- the speed report's figure


def _draw_lines(ax: Any, points: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> None:
    """One line per model, mode and variant: a colour per model, a line style and marker per mode."""
    lines: dict[str, list[tuple[int, float]]] = {}
    style: dict[str, tuple[str, str, str]] = {}
    models: list[str] = []
    modes: dict[str, list[str]] = {}
    for p in points:
        if p["status"] != "ok":
            continue
        lines.setdefault(p["line"], []).append((p["batch_size"], value(p)))
        models += [] if p["model"] in models else [p["model"]]
        known = modes.setdefault(p["model"], [])
        known += [] if p["line"] in known else [p["line"]]
        i = known.index(p["line"])
        style[p["line"]] = (f"C{models.index(p['model']) % 10}", ("-", "--", ":", "-.")[i % 4], "os^Dv"[i % 5])
    for label, xy in lines.items():
        xs, ys = zip(*sorted(xy), strict=True)
        color, linestyle, marker = style[label]
        ax.plot(xs, ys, color=color, linestyle=linestyle, marker=marker, label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size (samples per call)")
    ax.grid(True, which="both", alpha=0.3)


def throughput_plot(points: list[dict[str, Any]], path: Path) -> None:
    """Log-log throughput against batch size, one line per model, mode, dtype and compile variant.

    On a CPU a second panel shows samples per process-CPU second, which a busy shared host distorts much less.
    """
    on_cpu = all(p["device"].startswith("cpu") and p.get("cpu_time_median_s") for p in points if p["status"] == "ok")
    fig = Figure(figsize=(13 if on_cpu else 8.5, 5))
    axes = [fig.add_subplot(1, 2 if on_cpu else 1, i + 1) for i in range(2 if on_cpu else 1)]
    _draw_lines(axes[0], points, lambda p: p["throughput"])
    axes[0].set_ylabel("throughput (samples per wall-clock second)")
    if on_cpu:
        _draw_lines(axes[1], points, lambda p: p["batch_size"] / p["cpu_time_median_s"])
        axes[1].set_ylabel("samples per process-CPU second")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    devices = ", ".join(sorted({p["device"] for p in points}))
    shapes = ", ".join(sorted({p["shape"] for p in points}))
    fig.suptitle(f"model.sample(n) throughput, {shapes} on {devices}", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 0.88 if on_cpu else 0.8, 1.0))  # room on the right for the legend
    save(fig, path, dpi=120)


# ----------------------------------------------------------------------------- the report's figures

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
            ax.set_title(g.label)
            continue
        ax.imshow(imread(run.path / SAMPLES_NAME), cmap="gray", interpolation="nearest")
        ax.set_title(f"{g.label} (seed {run.record['seed']})")
    fig.suptitle(f"Samples on {groups[0].dataset}")
    return fig


def throughput_fid_figure(groups: list[Group]) -> Figure | None:
    """Mean FID against mean samples/s of the same (default) sampling mode per model, error bars = std over
    seeds; log x. Models whose mode changes the samples get one point per mode, joined by a line."""
    features = table_features(groups, ["fid"])
    points = [(g, throughput_cell(g), quality_cell(g, "fid", features)) for g in groups]
    points = [(g, t, f) for g, t, f in points if t.mean is not None and f.mean is not None]
    if not points:
        return None
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    for g, t, f in points:
        ax.errorbar(t.mean, f.mean, xerr=t.std or 0, yerr=f.std or 0, fmt="o", capsize=3)
        ax.annotate(g.label, (t.mean, f.mean), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    for g in groups:
        if g.info.get("mode_changes_samples"):
            line = [(throughput_cell(g, mode=m), quality_cell(g, "fid", features, mode=m)) for m in modes_of(g)]
            line = sorted((t.mean, f.mean) for t, f in line if t.mean is not None and f.mean is not None)
            if len(line) > 1:
                ax.plot(*zip(*line, strict=True), ":", color="0.5", linewidth=1)
    ax.set_xlabel("samples / s (default sampling mode, largest batch; dotted: other modes)")
    ax.set_ylabel(f"FID ({features} features), lower is better" if features else "FID, lower is better")
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
    ax.set_xticks(range(len(groups)), [g.label for g in groups])
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
        ax.set_title(f"{g.label} ({len(curves)} seed{'s' * (len(curves) > 1)})")
        ax.set_xlabel("step")
        ax.set_ylabel(curves[0][0])
    fig.suptitle(f"Training curves on {groups[0].dataset}")
    fig.tight_layout()
    return fig


def modes_of(group: Group) -> list[str]:
    return list(group.info.get("sampling_modes") or [])


def modes_figure(groups: list[Group]) -> Figure | None:
    """FID and throughput against sequential network evaluations per sample, for models whose sampling mode
    changes the samples (chain lengths, diffusion steps); one line per model, log x."""
    features = table_features(groups, ["fid"])
    lines = []
    for g in groups:
        if not g.info.get("mode_changes_samples"):
            continue
        evaluations = g.info.get("network_evaluations") or {}
        pts = []
        for mode in modes_of(g):
            fid, thr = quality_cell(g, "fid", features, mode=mode), throughput_cell(g, mode=mode)
            if mode in evaluations and fid.mean is not None:
                pts.append((evaluations[mode], fid.mean, thr.mean))
        if pts:
            lines.append((g, sorted(pts, key=lambda p: p[0])))
    if not lines:
        return None
    fig = Figure(figsize=(10, 4))
    ax_fid, ax_thr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for g, pts in lines:
        x = [p[0] for p in pts]
        ax_fid.plot(x, [p[1] for p in pts], marker="o", label=g.label)
        thr = [(p[0], p[2]) for p in pts if p[2] is not None]
        if thr:
            ax_thr.plot(*zip(*thr, strict=True), marker="o", label=g.label)
    ax_fid.set(xscale="log", xlabel="network evaluations per sample", ylabel=f"FID ({features})")
    ax_thr.set(xscale="log", yscale="log", xlabel="network evaluations per sample", ylabel="samples / s")
    for ax in (ax_fid, ax_thr):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Sample quality and speed against chain length / steps on {groups[0].dataset}")
    fig.tight_layout()
    return fig


FIGURES: tuple[tuple[str, str, Callable[[list[Group]], Figure | None]], ...] = (
    ("samples", "Sample grids", samples_figure),
    ("throughput_vs_fid", "Throughput against FID", throughput_fid_figure),
    ("bits_per_dim", "Bits/dim by kind", bits_per_dim_figure),
    ("modes", "Quality and speed against network evaluations", modes_figure),
    ("training_curves", "Training curves", curves_figure),
)


def save(fig: Figure, path: Path, dpi: int = 150) -> None:
    """Save through a temporary file, then rename, like every other file genbench writes."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))


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


# ----------------------------------------------------------------------------- the claims' figures


def _lines(ax: Any, series: dict[str, list[tuple[float, float, float | None]]], logx: bool = True) -> None:
    """One line per series with error bars (std over seeds), log x unless told otherwise."""
    for label, pts in series.items():
        xs, ys, es = zip(*pts, strict=True)
        ax.errorbar(xs, ys, yerr=[e or 0 for e in es], marker="o", capsize=3, label=label)
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=7)


def claim_speed_figure(evidence: claims.Evidence) -> Figure | None:
    lines = claims.speed_lines(evidence)
    if not lines:
        return None
    fig = Figure(figsize=(10, 4))
    ax_lat, ax_thr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for line, by_dims in lines.items():
        lat = [(d, x["latency_b1"]) for d, x in sorted(by_dims.items()) if "latency_b1" in x]
        if lat:
            ax_lat.plot(*zip(*lat, strict=True), marker="o", label=line)
        ax_thr.plot(*zip(*[(d, x["best"]) for d, x in sorted(by_dims.items())], strict=True), marker="o", label=line)
    ax_lat.set(xscale="log", yscale="log", xlabel="dimensions per sample D", ylabel="s per sample at batch 1")
    ax_thr.set(xscale="log", yscale="log", xlabel="dimensions per sample D", ylabel="best samples / s")
    for ax in (ax_lat, ax_thr):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("(a) Sampling cost against image size")
    fig.tight_layout()
    return fig


def _one_panel(series: claims.Series, xlabel: str, ylabel: str, title: str) -> tuple[Figure, Any] | None:
    """A figure with one panel of `series` (lines with error bars, log x), or None without data."""
    if not series:
        return None
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    _lines(ax, series)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return fig, ax


def claim_capacity_figure(evidence: claims.Evidence) -> Figure | None:
    """One panel per mixture (lines of one mixture only), each with its KDE's floor on true draws."""
    series, floors = claims.capacity_series(evidence), claims.kl_floors(evidence)
    panels = [
        (t, {k.removesuffix(f" on {t}"): v for k, v in series.items() if claims.on_table(k, t)})
        for t in claims.toy_tables(evidence)
    ]
    panels = [(t, lines) for t, lines in panels if lines]
    if not panels:
        return None
    fig = Figure(figsize=(6 * len(panels), 5.5))
    for i, (table, lines) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _lines(ax, lines)
        if table in floors:  # what a perfect sampler's KDE would score
            ax.axhline(floors[table][0], color="grey", linestyle="--", linewidth=1, label="KDE on true draws")
        ax.set(xlabel="capacity (hidden units of the swept width)", ylabel="KL to the true density (nats)", title=table)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.suptitle("(b) Toy 2-D: distance to the truth against capacity")
    fig.tight_layout()
    return fig


def claim_boltzmann_figure(evidence: claims.Evidence) -> Figure | None:
    dbms = [g for g in evidence.of_family("boltzmann") if g.ok_runs]
    if not dbms:
        return None
    log_z, fid = claims.partition_series(dbms[0]), claims.mode_series(dbms[0], "fid")
    if not log_z and not fid:
        return None
    fig = Figure(figsize=(10, 4))
    _lines(fig.add_subplot(1, 2, 1), {dbms[0].label: log_z} if log_z else {})
    fig.axes[0].set(xlabel="AIS intermediate distributions", ylabel="log Z (nats; bars: AIS stderr)")
    _lines(fig.add_subplot(1, 2, 2), {dbms[0].label: fid} if fid else {})
    fig.axes[1].set(xlabel="Gibbs sweeps per sample", ylabel="FID")
    fig.suptitle("(c) A DBM's partition function and its Gibbs chain")
    fig.tight_layout()
    return fig


def claim_chain_figure(evidence: claims.Evidence) -> Figure | None:
    gsns = [g for g in evidence.of_family("markov_chain") if g.ok_runs]
    if not gsns:
        return None
    g = gsns[0]
    panels = {"FID": claims.mode_series(g, "fid"), "recall": claims.mode_series(g, "recall")}
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        return None
    fig = Figure(figsize=(5 * len(panels), 4))
    for i, (title, pts) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _lines(ax, {g.label: pts})
        ax.set(xlabel="chain steps per sample", ylabel=title)
    fig.suptitle("(d) A GSN's samples against chain length")
    fig.tight_layout()
    return fig


def claim_latent_figure(evidence: claims.Evidence) -> Figure | None:
    drawn = _one_panel(claims.latent_series(evidence), "latent size", "FID", "(e) What a chosen latent size costs")
    if drawn is None:
        return None
    fig, ax = drawn
    for g in evidence.of_family("flow"):
        if g.info.get("latent_dim"):
            ax.axvline(g.info["latent_dim"], color="0.5", linestyle=":", label=f"{g.label}: latent = D")
    ax.legend(fontsize=7)
    return fig


def claim_convergence_figure(evidence: claims.Evidence) -> Figure | None:
    """FID, modes covered and KL to the truth (its real-data floor dashed) over training, then the tracked GANs'
    discriminator and generator losses (mean over seeds, ± std band)."""
    floors = claims.kl_floors(evidence)
    panels: list[tuple[str, dict, float | None]] = [
        (f"FID on {t}", s, None) for t, s in claims.progress_series(evidence, "fid_over_training").items()
    ]
    for name, title in (("modes_covered_over_training", "modes covered"), ("kl_to_truth_over_training", "KL to truth")):
        for t, s in claims.progress_series(evidence, name).items():
            panels.append((f"{title}, {t}", s, floors[t][0] if name.startswith("kl") and t in floors else None))
    losses = claims.adversarial_losses(evidence)
    if not panels and not losses:
        return None
    cols = 3
    rows = math.ceil(len(panels) / cols) + math.ceil(len(losses) / cols)
    fig = Figure(figsize=(4.5 * cols, 4.8 * rows))
    for i, (title, series, floor) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        _lines(ax, series, logx=False)
        if floor is not None:
            ax.axhline(floor, color="0.4", linestyle="--", label="the same KDE on true draws (floor)")
        ax.set(xlabel="training step", title=title)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)  # below: curves cross
    first = math.ceil(len(panels) / cols) * cols
    for i, (label, scalars) in enumerate(losses.items()):
        ax = fig.add_subplot(rows, cols, first + i + 1)
        for scalar, pts in scalars.items():
            steps, means, stds = zip(*pts, strict=True)
            ax.plot(steps, means, label=scalar)
            spread = [e or 0 for e in stds]
            ax.fill_between(steps, [m - e for m, e in zip(means, spread, strict=True)],
                            [m + e for m, e in zip(means, spread, strict=True)], alpha=0.25)  # fmt: skip
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        ax.set(xlabel="training step", ylabel="loss (mean ± std over seeds)", title=label)
        ax.title.set_fontsize(8)
    fig.suptitle("(f) Sample quality and losses over training")
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # leave the title its own row above the panels' titles
    return fig


CLAIM_FIGURES: dict[str, Callable[[claims.Evidence], Figure | None]] = {
    "a": claim_speed_figure,
    "b": claim_capacity_figure,
    "c": claim_boltzmann_figure,
    "d": claim_chain_figure,
    "e": claim_latent_figure,
    "f": claim_convergence_figure,
}


def draw_claims(evidence: claims.Evidence, out: Path) -> dict[str, str]:
    """Draw every claim figure the records can feed; returns {claim key: file stem}."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, draw in CLAIM_FIGURES.items():
        fig = draw(evidence)
        if fig is None:
            continue
        stem = f"claim_{key}"
        for ext in ("png", "pdf"):
            save(fig, out / f"{stem}.{ext}")
        written[key] = stem
    return written
