"""Probe: how many of a toy mixture's modes the toy GAN covers over training, by optimiser setting.

Issue 15 asks whether the toy GAN's mode coverage is in line with what GANs reach in the literature. This trains
`models.gan.GAN` on a toy2d mixture with its defaults and with variants that change the optimiser or the weight
average (`VARIANTS`), on the pipeline's batches (genbench.train.BatchSampler), and counts the modes covered
(genbench.metrics.mixture.coverage: at least 20 of 2,500 samples within 3 sigma of a centre) and the fraction of
high-quality samples at four checkpoints. No selection is made from it: it is a probe of what a setting is worth,
and the committed defaults are unchanged.

Run:  OMP_NUM_THREADS=1 python benchmarks/toy_gan_coverage.py --mixture grid25 --steps 3000
Writes results/benchmarks/toy_gan_coverage_<mixture>_<steps>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from genbench.datasets import load_dataset
from genbench.metrics.mixture import coverage
from genbench.results import atomic_write_text, git_commit, package_versions
from genbench.train import BatchSampler
from models.gan import GAN

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no_ema": {"ema_decay": None},
    "lr1e-3": {"lr": 1e-3},
    "lr1e-3_no_ema": {"lr": 1e-3, "ema_decay": None},
    "lr1e-3_beta2_0.9": {"lr": 1e-3, "beta2": 0.9},
}
N_SAMPLES, MIN_PER_MODE, CHECKPOINTS = 2500, 20, 4


def run(data: Any, settings: dict[str, Any], steps: int, seed: int) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    model = GAN(data.spec, **settings)
    model.configure_optimizers()
    sampler, out = BatchSampler(data.train, 64, seed), []
    for step in range(steps):
        model.train_step(sampler.batch(step))
        if (step + 1) % (steps // CHECKPOINTS) == 0:
            with torch.no_grad():
                x = model.sample(N_SAMPLES, torch.Generator().manual_seed(5))
            modes, quality = coverage(x, data.density.centers, data.density.sigma, MIN_PER_MODE)
            out.append({"step": step + 1, "modes": modes, "high_quality": quality})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mixture", default="grid25")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/benchmarks")
    args = parser.parse_args()
    data = load_dataset("toy2d", mixture=args.mixture)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, load_before, started = [], os.getloadavg(), time.perf_counter()
    for name in args.variants.split(","):
        for seed in seeds:
            curve = run(data, VARIANTS[name], args.steps, seed)
            rows.append({"variant": name, "settings": VARIANTS[name], "seed": seed, "curve": curve})
            print(name, seed, [(c["modes"], round(c["high_quality"], 2)) for c in curve], flush=True)
    stem = f"toy_gan_coverage_{args.mixture}_{args.steps}"
    record = {
        "benchmark": "toy_gan_coverage",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "mixture": args.mixture,
        "modes": len(data.density.centers),
        "protocol": {
            "steps": args.steps,
            "batch": 64,
            "n_samples": N_SAMPLES,
            "min_per_mode": MIN_PER_MODE,
            "within_sigmas": 3,
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "wall_s": time.perf_counter() - started,
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out_dir / f"{stem}.json", json.dumps(record, indent=2) + "\n")
    steps = [c["step"] for c in rows[0]["curve"]]
    lines = [
        f"Toy GAN on {args.mixture} ({len(data.density.centers)} modes), batch 64: modes covered (>= {MIN_PER_MODE} "
        f"of {N_SAMPLES} samples within 3 sigma) / high-quality fraction at each checkpoint. From `python "
        f"benchmarks/toy_gan_coverage.py --mixture {args.mixture} --steps {args.steps}`.",
        "",
        "| variant | seed | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|" + " --- |" * (len(steps) + 2),
    ]
    for r in rows:
        cells = [f"{c['modes']} / {c['high_quality']:.2f}" for c in r["curve"]]
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + " |")
    atomic_write_text(args.out_dir / f"{stem}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
