"""Benchmark: genbench's toy 2-D RealNVP against normflows' RealNVP, side by side, at equal size, steps and batch.

Both train in one process on the same mini-batches (genbench.train.BatchSampler, a function of seed and step) of
the toy2d mixtures (ring8, grid25; the pipeline's split, validation rows left out), with Adam at the same learning
rate, and are scored by the suite's own KL-to-truth estimator (genbench.metrics.likelihood.kl_to_truth_metrics:
`E_test[log p_true - log p_model]` with the model's exact density) on the same test points. normflows' model is the
recipe of its README: `n` x [AffineCouplingBlock(MLP([1, h, ..., h, 2], init_zeros=True)), Permute(2, 'swap')]
on a trainable DiagGaussian(2) base, trained with `forward_kld`. Ours is `models.flows.RealNVP` on toy2d, trained
with its own `train_step` (gradient clipping and its weight average included); besides its defaults the benchmark
trains variants that change one setting each (`VARIANTS`), so the table says what each setting is worth.

The steps of the candidates are interleaved (one step of each in turn), so a change of load hits all of them alike;
seconds per step are the sum of each candidate's step times over the run. The 1-minute load average is recorded
around every run, and a run that saw a load above 2 is marked: its timings are less trustworthy.

Run:  make bench-toyflows                              (installs the `bench` extra: normflows)
      OMP_NUM_THREADS=1 python benchmarks/toy_flows_vs_normflows.py --seeds 0,1,2
      python benchmarks/toy_flows_vs_normflows.py --quick   (300 steps, one seed; *_quick.* files)
Writes results/benchmarks/toy_flows_vs_normflows.json and .md (or toy_flows_vs_normflows_quick.*).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from genbench.data import Dataset
from genbench.datasets import load_dataset
from genbench.metrics.likelihood import kl_to_truth_metrics
from genbench.model import GenerativeModel
from genbench.results import device_name, git_commit, package_versions, write_benchmark
from genbench.train import BatchSampler
from models.flows import RealNVP

try:
    import normflows as nf
except ImportError:  # the `bench` extra is missing: say how to get it
    sys.exit("normflows is not installed: pip install -e '.[bench]' (or make bench-toyflows)")

LOAD_WARN = 2.0
# Our variants: the defaults, then each with one change undone, then the former toy recipe (both undone).
# `ours_unclamped` and `ours_clamp3` try the log-scale maps `AffineCoupling` offers besides the default.
VARIANTS: dict[str, dict[str, Any]] = {
    "ours": {},
    "ours_no_ema": {"toy_ema_decay": None},
    "ours_actnorm": {"toy_actnorm": True},
    "ours_unclamped": {"toy_clamp": None},
    "ours_clamp3": {"toy_clamp": 3.0},
    "ours_former": {"toy_actnorm": True, "toy_ema_decay": None},
}
DEFAULT_VARIANTS = "ours,ours_no_ema,ours_actnorm,ours_unclamped,ours_former"
PEER = "normflows"


class NormflowsRealNVP(GenerativeModel):
    """normflows' README RealNVP for 2-D data, behind the suite's model contract so its estimators can score it."""

    likelihood = "exact"
    family = "flow"
    data_variant = "dequantized"  # what our flow declares; toy data is used raw by both

    def __init__(self, data: Dataset, n_couplings: int, hidden: int, n_hidden: int, lr: float) -> None:
        super().__init__(data.spec)
        flows = []
        for _ in range(n_couplings):
            param_map = nf.nets.MLP([1, *[hidden] * n_hidden, 2], init_zeros=True)
            flows += [nf.flows.AffineCouplingBlock(param_map), nf.flows.Permute(2, mode="swap")]
        self.flow = nf.NormalizingFlow(nf.distributions.base.DiagGaussian(2), flows)
        self.latent_dim = 2
        self.lr = lr

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"flow": torch.optim.Adam(self.parameters(), lr=self.lr)}
        return self.optimizers

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.train()
        loss = self.flow.forward_kld(x)
        opt = self.optimizers["flow"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow.log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        return self.flow.sample(n)[0]


def build(name: str, data: Dataset, args: argparse.Namespace, seed: int) -> GenerativeModel:
    torch.manual_seed(seed)  # the same initialisation stream for every candidate of a seed
    if name == PEER:
        model: GenerativeModel = NormflowsRealNVP(data, args.couplings, args.hidden, args.layers, args.lr)
    else:
        size = {"n_couplings": args.couplings, "mlp_hidden": args.hidden, "mlp_layers": args.layers}
        model = RealNVP(data.spec, **size, lr=args.lr, **VARIANTS[name])
    model.configure_optimizers()
    return model


def kl_to_truth(model: GenerativeModel, data: Dataset) -> tuple[float, float, str]:
    """The suite's KL-to-truth on the whole test split: (nats, stderr, method)."""
    lcfg = OmegaConf.create({"n_test": None, "batch_size": 4096, "kl_to_truth": {"enabled": True}})
    model.eval()

    def no_samples(n: int) -> torch.Tensor:
        raise AssertionError("both flows have an exact density: no samples are needed")

    (metric,) = kl_to_truth_metrics(model, data, lcfg, None, no_samples)
    return metric.value, metric.stderr, metric.extra["method"]


def run(mixture: str, seed: int, names: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    data = load_dataset("toy2d", mixture=mixture)
    sampler = BatchSampler(data.train, args.batch, seed)
    models = {name: build(name, data, args, seed) for name in names}
    step_s = dict.fromkeys(names, 0.0)
    cpu_s = dict.fromkeys(names, 0.0)
    load_before = os.getloadavg()
    load_max = load_before[0]
    for step in range(args.steps):
        x = sampler.batch(step)
        for name, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            model.train_step(x)
            step_s[name] += time.perf_counter() - start
            cpu_s[name] += time.process_time() - start_cpu
        if step % 250 == 0:
            load_max = max(load_max, os.getloadavg()[0])
    load_after = os.getloadavg()
    load_max = max(load_max, load_after[0])
    rows = []
    for name, model in models.items():
        kl, se, method = kl_to_truth(model, data)
        rows.append(
            {
                "mixture": mixture,
                "seed": seed,
                "model": name,
                "config": VARIANTS.get(name, {"recipe": "normflows README RealNVP"}),
                "parameters": sum(p.numel() for p in model.parameters()),
                "kl_to_truth": kl,
                "kl_stderr": se,
                "kl_method": method,
                "s_per_step": step_s[name] / args.steps,
                "cpu_s_per_step": cpu_s[name] / args.steps,
                "load_average": {"before": list(load_before), "after": list(load_after), "max_1min": load_max},
                "loaded": load_max > LOAD_WARN,
            }
        )
        print(
            f"  {mixture} seed {seed} {name:>13}: KL {kl:.4f} +- {se:.4f} nats, "
            f"{1e3 * step_s[name] / args.steps:.3f} ms/step (load max {load_max:.2f})",
            flush=True,
        )
    return rows


def summarise(rows: list[dict[str, Any]], names: list[str], mixtures: list[str]) -> list[dict[str, Any]]:
    out = []
    for mixture in mixtures:
        for name in names:
            mine = [r for r in rows if r["mixture"] == mixture and r["model"] == name]
            kls = [r["kl_to_truth"] for r in mine]
            sps = [r["s_per_step"] for r in mine]
            out.append(
                {
                    "mixture": mixture,
                    "model": name,
                    "seeds": [r["seed"] for r in mine],
                    "kl_mean": statistics.mean(kls),
                    "kl_std": statistics.stdev(kls) if len(kls) > 1 else 0.0,
                    "kl_per_seed": kls,
                    "s_per_step_mean": statistics.mean(sps),
                    "parameters": mine[0]["parameters"],
                    "any_loaded": any(r["loaded"] for r in mine),
                }
            )
    return out


def markdown(record: dict[str, Any]) -> str:
    a = record["settings"]
    lines = [
        f"# Toy 2-D RealNVP: genbench against normflows ({record['date']})",
        "",
        f"Command: `{record['command']}`; commit `{record['git_commit']}`.",
        f"torch {record['packages'].get('torch')}, normflows {record['packages'].get('normflows')}; "
        f"{record['device']}, {record['cpu_count']} cores, torch threads {record['torch_threads']}, "
        f"OMP_NUM_THREADS={record['omp_num_threads']}.",
        f"{a['couplings']} couplings x {a['hidden']} hidden x {a['layers']} hidden layers, {a['steps']} steps of "
        f"{a['batch']}, Adam lr {a['lr']}; seeds {a['seeds']}. KL to truth in nats by the suite's estimator "
        "(exact densities, the 5,000 test points), mean ± std over seeds. s/step: wall seconds per training step, "
        "the candidates' steps interleaved.",
        "",
        "| mixture | model | params | KL to truth (nats) | per seed | ms/step | vs normflows time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary = record["summary"]
    for row in summary:
        peer = next(s for s in summary if s["mixture"] == row["mixture"] and s["model"] == PEER)
        flag = " (load > 2)" if row["any_loaded"] else ""
        per_seed = ", ".join(f"{v:.3f}" for v in row["kl_per_seed"])
        lines.append(
            f"| {row['mixture']} | {row['model']} | {row['parameters']} | {row['kl_mean']:.3f} ± {row['kl_std']:.3f} "
            f"| {per_seed} | {1e3 * row['s_per_step_mean']:.3f}{flag} | "
            f"{row['s_per_step_mean'] / peer['s_per_step_mean']:.2f}x |"
        )
    lines += ["", "Variants of ours (each changes one default; `ours_former` is the toy recipe before issue 15):", ""]
    run = a["variants"].split(",")
    lines += [f"- `{name}`: {json.dumps(VARIANTS[name]) if VARIANTS[name] else 'the defaults'}" for name in run]
    loads = [r["load_average"]["max_1min"] for r in record["rows"]]
    lines += ["", f"1-minute load average over the runs: {min(loads):.2f} to {max(loads):.2f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps, seed 0: a smoke run")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--couplings", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--mixtures", default="ring8,grid25")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"ours: any of {','.join(VARIANTS)}")
    parser.add_argument("--out-dir", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 300, "0"
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    names = [*args.variants.split(","), PEER]
    seeds = [int(s) for s in args.seeds.split(",")]
    mixtures = args.mixtures.split(",")
    rows: list[dict[str, Any]] = []
    for mixture in mixtures:
        for seed in seeds:
            rows += run(mixture, seed, names, args)

    versions = package_versions()
    versions["normflows"] = metadata.version("normflows")
    record = {
        "benchmark": "toy_flows_vs_normflows",
        "command": " ".join(["python", "benchmarks/toy_flows_vs_normflows.py", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "packages": versions,
        "device": device_name("cpu"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load_warn_above": LOAD_WARN,
        "summary": summarise(rows, names, mixtures),
        "rows": rows,
    }
    stem = "toy_flows_vs_normflows_quick" if args.quick else "toy_flows_vs_normflows"
    write_benchmark(args.out_dir, stem, record, markdown(record))


if __name__ == "__main__":
    main()
