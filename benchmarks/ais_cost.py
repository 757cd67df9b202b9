"""Benchmark: the cost of a default AIS metric, before and after issue 14, side by side in one process.

Loads the AIS core and adapters of an older commit (`git show <commit>:...`, default the commit before issue 14)
next to the current ones, and runs each one's `ais_metrics` with its own `eval=default` AIS section on the same
decoder, alternating, on one thread. It reports process CPU seconds (what the issue bounds: the new run must cost
no more), wall seconds, the load average around each call, and the estimate, so the lead can rerun it on a quiet
machine. Decoders: a trained run directory (`--run-dir`, e.g. a digits VAE), and an untrained digits GAN (its
cost per step does not depend on training; it exercises the Gaussian observation model and the sigma search).

Run:  .venv/bin/python benchmarks/ais_cost.py --run-dir results/runs/digits/vae/seed0 [--old 0848fa5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from genbench.data import load_digits_data
from genbench.metrics import likelihood as current
from genbench.pipeline import build_model, load_run

ROOT = Path(__file__).resolve().parents[1]


def old_modules(commit: str) -> tuple[object, object]:
    """The old `ais_metrics` module and its `eval=default` config, imported from `commit` under private names."""
    folder = Path(tempfile.mkdtemp(prefix="ais_old_"))

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout

    (folder / "old_ais.py").write_text(show("genbench/metrics/ais.py"))
    likelihood = show("genbench/metrics/likelihood.py").replace(
        "from genbench.metrics.ais import", "from old_ais import"
    )
    (folder / "old_likelihood.py").write_text(likelihood)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("old_likelihood", folder / "old_likelihood.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, OmegaConf.create(show("conf/eval/default.yaml"))


def measure(module: object, model: torch.nn.Module, data: object, eval_cfg: object) -> dict[str, float]:
    load_before = os.getloadavg()[0]
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = module.ais_metrics(model, data, eval_cfg.likelihood, torch.Generator().manual_seed(1234))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    nats = next(m for m in metrics if m.name == "nll_nats")
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "log_p": -nats.value,
        "bdmc_gap_nats": nats.extra.get("bdmc_gap_nats"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=None, help="a trained decoder run (e.g. a digits VAE)")
    parser.add_argument("--old", default="0848fa5", help="the commit whose AIS is the baseline")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    old, old_cfg = old_modules(args.old)
    new_cfg = OmegaConf.load(ROOT / "conf" / "eval" / "default.yaml")
    cases = []
    if args.run_dir:
        model, data, _ = load_run(args.run_dir)
        cases.append((f"trained {Path(args.run_dir).parent.name}", model, data))
    digits = load_digits_data()
    torch.manual_seed(0)
    gan = build_model({**OmegaConf.to_container(OmegaConf.load(ROOT / "conf/model/gan.yaml"))}, digits.spec).eval()
    cases.append(("untrained gan (gaussian p(x|z), sigma search)", gan, digits))
    results = []
    for label, model, data in cases:
        for repeat in range(args.repeats):
            for name, module, cfg in (("old", old, old_cfg), ("new", current, new_cfg)):
                row = {"case": label, "version": name, "repeat": repeat, **measure(module, model, data, cfg)}
                results.append(row)
                print(json.dumps(row), flush=True)
        for name in ("old", "new"):
            cpu = [r["cpu_s"] for r in results if r["case"] == label and r["version"] == name]
            print(f"{label}: {name} median CPU {sorted(cpu)[len(cpu) // 2]:.1f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
