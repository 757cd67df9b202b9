"""The suite's toy GAN and VAE on the literature's ring and grid, scored by the literature's mode-collapse protocol.

Issue 15 asks whether the toy GAN and VAE reach what these families reach in the literature on these mixtures. The
published numbers (PacGAN, Lin et al. 2018, Table 1; VEEGAN, Srivastava et al. 2017, Table 1) are modes covered and
the share of high-quality samples, on mixtures narrower than the suite's ring8 and grid25: a ring of 8 Gaussians of
radius 1 with sigma 0.01, and a 5 x 5 grid of spacing 2 with sigma 0.05. This builds those two mixtures rescaled into
the suite's range (ring radius 2, sigma 0.02; grid spacing 1, sigma 0.025: modes, the 3-sigma rule and the mode
histogram do not change under a uniform rescaling), trains the suite's GAN (non-saturating) and VAE (ELBO- and
IWAE-8-trained) from their conf/model defaults with the pipeline's batches, and scores 2,500 samples:

- modes covered: at least 20 of the 2,500 samples within 3 sigma of the mode's centre (genbench.metrics.mixture;
  PacGAN's text) and, as PacGAN's released code counts it, at least one;
- high-quality fraction: samples within 3 sigma of their nearest centre;
- reverse KL of the mode histogram: KL(q || uniform) over the modes, q the high-quality samples' share per mode.

The literature's numbers are quoted beside them (`LITERATURE`), never recomputed. No setting is selected from this.

Run:  OMP_NUM_THREADS=1 python benchmarks/toy_vs_literature.py [--steps 12000 --seeds 0,1,2]
Writes results/benchmarks/toy_vs_literature.{json,md} (`_quick` with --quick).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from genbench.data import ToyMixture
from genbench.datasets import load_dataset
from genbench.metrics.mixture import WITHIN_SIGMAS, mode_counts
from genbench.pipeline import build_model
from genbench.results import git_commit, package_versions, write_benchmark
from genbench.train import BatchSampler

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_SAMPLES, MIN_PER_MODE, BATCH = 100_000, 2500, 20, 64
# The literature's sigma on the suite's centres (ring radius 2, grid spacing 1): its mixtures rescaled by 2 and 1/2.
GEOMETRY = {"ring8": 0.02, "grid25": 0.025}
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "gan (ns)": ("gan", {"loss": "ns"}),
    "vae (ELBO)": ("vae", {"train_k": 1}),
    "vae (IWAE-8)": ("vae", {"train_k": 8}),
}
# (source, model) -> mixture -> (modes, high-quality percent, reverse KL or None); mean over the papers' runs.
LITERATURE: dict[tuple[str, str], dict[str, tuple[float, float, float | None]]] = {
    ("PacGAN Table 1 (10 runs)", "GAN"): {"ring8": (6.3, 98.2, 0.45), "grid25": (17.3, 94.8, 0.70)},
    ("PacGAN Table 1 (10 runs)", "PacGAN2"): {"ring8": (7.9, 95.6, 0.07), "grid25": (23.8, 91.3, 0.13)},
    ("VEEGAN Table 1", "GAN"): {"ring8": (1.0, 99.3, None), "grid25": (3.3, 0.5, None)},
    ("VEEGAN Table 1", "Unrolled GAN"): {"ring8": (7.6, 35.6, None), "grid25": (23.6, 16.0, None)},
    ("VEEGAN Table 1", "VEEGAN"): {"ring8": (8.0, 52.9, None), "grid25": (24.6, 40.0, None)},
}


def literature_mixture(name: str) -> ToyMixture:
    """The suite's mixture `name` with the literature's sigma-to-spacing ratio (see the module docstring)."""
    mixture = ToyMixture(name)
    mixture.sigma = GEOMETRY[name]
    return mixture


def mode_scores(points: torch.Tensor, mixture: ToyMixture) -> dict[str, float]:
    """Modes covered (>= 20 and >= 1 samples), high-quality fraction and the mode histogram's reverse KL."""
    counts = mode_counts(points, mixture.centers, mixture.sigma)
    modes, modes_any = int((counts >= MIN_PER_MODE).sum()), int((counts >= 1).sum())
    quality = int(counts.sum()) / len(points)
    share = counts.double() / max(int(counts.sum()), 1)
    held = share > 0
    reverse_kl = float((share[held] * (share[held] * len(share)).log()).sum()) if held.any() else math.inf
    return {"modes": modes, "modes_any": modes_any, "high_quality": quality, "reverse_kl": reverse_kl}


def run(mixture_name: str, model_name: str, steps: int, seed: int) -> dict[str, Any]:
    mixture = literature_mixture(mixture_name)
    spec = load_dataset("toy2d", mixture=mixture_name).spec  # shape (2,), the suite's value range
    train = mixture.sample(N_TRAIN, torch.Generator().manual_seed(0))
    family, overrides = MODELS[model_name]
    model_cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / f"conf/model/{family}.yaml")), **overrides}
    torch.manual_seed(seed)
    model = build_model(model_cfg, spec)
    model.configure_optimizers()
    sampler, started = BatchSampler(train, BATCH, seed), time.perf_counter()
    model.train()
    for step in range(steps):
        scalars = model.train_step(sampler.batch(step))
    model.eval()
    with torch.no_grad():
        points = model.sample(N_SAMPLES, torch.Generator().manual_seed(1000 + seed))
    loss = float(next(iter(scalars.values()))) if steps else math.nan
    scores = mode_scores(points, mixture)
    row = {"mixture": mixture_name, "model": model_name, "seed": seed, "config": model_cfg, "final_loss": loss}
    return {**row, **scores, "wall_s": time.perf_counter() - started}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for mixture in GEOMETRY:
        for model in MODELS:
            got = [r for r in rows if r["mixture"] == mixture and r["model"] == model]
            if not got:
                continue
            entry: dict[str, Any] = {"mixture": mixture, "model": model, "runs": len(got)}
            for key in ("modes", "modes_any", "high_quality", "reverse_kl"):
                values = [r[key] for r in got]
                entry[key] = statistics.fmean(values)
                entry[f"{key}_se"] = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
            out.append(entry)
    return out


def cell(entry: dict[str, Any], key: str, fmt: str, scale: float = 1.0) -> str:
    se = entry[f"{key}_se"]
    value = format(scale * entry[key], fmt)
    return value if se is None else f"{value} ± {format(scale * se, fmt)}"


def markdown(record: dict[str, Any]) -> str:
    protocol = record["protocol"]
    lines = [
        f"The suite's toy models on the literature's mixtures (ring: sigma {GEOMETRY['ring8']} at radius 2; grid: "
        f"sigma {GEOMETRY['grid25']} at spacing 1; the papers' geometry rescaled), {protocol['steps']:,} steps at "
        f"batch {BATCH} on {N_TRAIN:,} training points, {N_SAMPLES:,} samples scored; mean ± standard error over "
        f"seeds {protocol['seeds']}. From `{record['command']}` (load average {record['load_average']['before'][0]:.2f}"
        f" before, {record['load_average']['after'][0]:.2f} after). The papers' rows are quoted from their tables "
        "(PacGAN trains 400 epochs of 1,000 batches of 100; VEEGAN's protocol differs again), not rerun.",
        "",
        "| mixture | model | modes (>= 20 samples) | modes (>= 1) | high quality % | reverse KL (modes) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mixture in GEOMETRY:
        for entry in (e for e in record["summary"] if e["mixture"] == mixture):
            lines.append(
                f"| {mixture} | genbench {entry['model']} | {cell(entry, 'modes', '.1f')} | "
                f"{cell(entry, 'modes_any', '.1f')} | {cell(entry, 'high_quality', '.1f', 100)} | "
                f"{cell(entry, 'reverse_kl', '.2f')} |"
            )
        for (source, model), by_mixture in LITERATURE.items():
            modes, quality, kl = by_mixture[mixture]
            kl_text = "—" if kl is None else f"{kl:.2f}"
            lines.append(f"| {mixture} | {model} ({source}) | {modes:.1f} | | {quality:.1f} | {kl_text} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps, seed 0: a smoke run")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/benchmarks")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 300, "0"
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        sys.exit(f"unknown models {unknown}; choose from {list(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, load_before = [], os.getloadavg()
    for mixture in GEOMETRY:
        for model in models:
            for seed in seeds:
                row = run(mixture, model, args.steps, seed)
                rows.append(row)
                print(
                    f"{mixture} {model} seed {seed}: modes {row['modes']} (any {row['modes_any']}), high quality "
                    f"{row['high_quality']:.3f}, reverse KL {row['reverse_kl']:.3f} ({row['wall_s']:.0f} s)",
                    flush=True,
                )
    record = {
        "benchmark": "toy_vs_literature",
        "command": " ".join(["python", "benchmarks/toy_vs_literature.py", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "torch_threads": torch.get_num_threads(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "protocol": {
            "steps": args.steps,
            "seeds": seeds,
            "batch": BATCH,
            "n_train": N_TRAIN,
            "n_samples": N_SAMPLES,
            "min_per_mode": MIN_PER_MODE,
            "within_sigmas": WITHIN_SIGMAS,
            "sigma": GEOMETRY,
        },
        "literature": [
            {"source": source, "model": model, **{m: list(v) for m, v in by.items()}}
            for (source, model), by in LITERATURE.items()
        ],
        "summary": summarise(rows),
        "rows": rows,
    }
    stem = "toy_vs_literature_quick" if args.quick else "toy_vs_literature"
    write_benchmark(args.out_dir, stem, record, markdown(record))


if __name__ == "__main__":
    main()
