"""Figures of a single run: its sample grid and its training curve (the report draws cross-run figures)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from genbench.data import Dataset  # noqa: E402

MIN_GRID_PIXELS = 32  # small images (8x8 digits) are upscaled so a grid is readable at a glance


def save_sample_grid(samples: torch.Tensor, path: Path, data: Dataset) -> None:
    """Images as a grid PNG; toy 2-D samples as a scatter over the test data."""
    if data.spec.is_image:
        images = samples.clamp(0, 1).float()
        height = images.shape[-1]
        if height < MIN_GRID_PIXELS:
            images = F.interpolate(images, scale_factor=MIN_GRID_PIXELS // height, mode="nearest")
        save_image(images, path, nrow=int(len(images) ** 0.5), padding=2, pad_value=0.5)
        return
    fig, ax = plt.subplots(figsize=(4, 4))
    test = data.test[:2000].numpy()
    ax.scatter(test[:, 0], test[:, 1], s=2, c="0.7", label="data")
    pts = samples.numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=4, c="C3", label="model")
    ax.set_xlim(*data.spec.value_range)
    ax.set_ylim(*data.spec.value_range)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(steps, [float(r[key]) for r in rows], lw=1)
        ax.set_xlabel("step")
        ax.set_title(key, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
