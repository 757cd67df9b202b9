"""Device traffic of every model, without a GPU: ops, syncs, host-device copies and float64 ops per training step and
per sample call, with each model on the `meta` device (genbench.metrics.speed_timing.device_traffic).

Counts, not timings: they do not depend on the machine's load. Syncs are scalar reads of device tensors (`.item()`,
`float()`, `bool()`); host reads (an optimizer's CPU step counter) are free on a GPU and listed apart. Sampling gets
a CPU generator, as the pipeline hands it. The training step is the second one (the first reads host copies once).

    PYTHONPATH=. .venv/bin/python benchmarks/device_traffic.py              # conf/model defaults at 28x28
    PYTHONPATH=. .venv/bin/python benchmarks/device_traffic.py --size 8     # quicker
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import torch
import yaml

from genbench.data import DataSpec
from genbench.metrics.speed_timing import Traffic, device_traffic

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def row(what: str, t: Traffic) -> str:
    return f"| {what} | {t.ops} | {t.syncs} | {t.copies} | {t.host_reads} | {t.float64} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28, help="image height and width (one channel)")
    parser.add_argument("--batch", type=int, default=64, help="training batch size")
    args = parser.parse_args()
    spec = DataSpec("traffic", (1, args.size, args.size), 256, (0.0, 1.0), 0, 0, "random images")
    meta = torch.device("meta")
    print("| model: call | ops | syncs | copies | host reads | float64 ops |\n|---|---|---|---|---|---|")
    for path in sorted(CONF.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        name, (module, cls) = cfg.pop("name"), cfg.pop("_target_").rsplit(".", 1)
        torch.manual_seed(0)
        model = getattr(importlib.import_module(module), cls)(spec=spec, **cfg).to(meta)
        model.configure_optimizers()
        x = torch.rand(args.batch, *spec.shape, device=meta)
        with device_traffic():  # the first step reads host copies of device state once; not the steady state
            model.train_step(x)
        with device_traffic() as t:
            model.train_step(x)
        print(row(f"{name}: train_step 2", t))
        model.eval()
        generator = torch.Generator().manual_seed(0)
        for mode in model.sampling_modes:
            with torch.no_grad(), device_traffic() as t:
                model.sample(1, generator=generator, mode=mode)
            print(row(f"{name}: sample({mode})", t), flush=True)


if __name__ == "__main__":
    main()
