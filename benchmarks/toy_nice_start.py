"""Benchmark: the toy NICE's KL to truth at one setting, with its default start or the former identity start.

Trains `models.flows.NICE` on a toy2d mixture (the pipeline's split) for `--steps` steps of 64 from
`genbench.train.BatchSampler` (a function of seed and step), lr and clipping from conf/model/nice.yaml, and prints
the suite's KL to truth (`genbench.metrics.likelihood.kl_to_truth_metrics`, exact density), the same number
`genbench bench model=nice dataset=toy2d ...` records (ring8, hidden 64, seed 0: 1.379 here and in record.json).

Run:  OMP_NUM_THREADS=1 python benchmarks/toy_nice_start.py ring8 64 0             (the default start)
      OMP_NUM_THREADS=1 python benchmarks/toy_nice_start.py ring8 64 0 --identity  (toy_init_gain: null)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from genbench.datasets import load_dataset
from genbench.metrics.likelihood import kl_to_truth_metrics
from genbench.train import BatchSampler
from models.flows import NICE

CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "nice.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mixture", choices=["ring8", "grid25"])
    parser.add_argument("hidden", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--identity", action="store_true", help="the former start: zero last layers")
    args = parser.parse_args()
    kwargs = {k: v for k, v in yaml.safe_load(CONF.read_text()).items() if k not in ("name", "_target_")}
    kwargs["hidden"] = args.hidden
    if args.identity:
        kwargs["toy_init_gain"] = None
    data = load_dataset("toy2d", mixture=args.mixture)
    torch.manual_seed(args.seed)
    model = NICE(data.spec, **kwargs)
    model.configure_optimizers()
    batches = BatchSampler(data.train, 64, seed=args.seed)
    start = time.perf_counter()
    for step in range(args.steps):
        model.train_step(batches.batch(step))
    lcfg = OmegaConf.create({"n_test": None, "batch_size": 4096, "kl_to_truth": {"enabled": True}})
    (kl,) = kl_to_truth_metrics(model.eval(), data, lcfg, None, lambda n: torch.empty(0))
    start_kind = "identity" if args.identity else "default"
    print(
        f"{args.mixture} hidden={args.hidden} seed={args.seed} start={start_kind} steps={args.steps}: "
        f"KL={kl.value:.3f} nats ({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
