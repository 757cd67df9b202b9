"""Cached vs naive PixelCNN sampling, side by side, at MNIST shape (1 x 28 x 28, L = 256).

The model is conf/model/pixelcnn.yaml's default, untrained (sampling cost does not depend on the weights).
Both modes get the same generator seed; the script reports whether their samples are identical.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pixelcnn_sampling.py --n 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from genbench.data import DataSpec
from models.pixelcnn import PixelCNN

CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "pixelcnn.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="samples per call (batch size)")
    parser.add_argument("--size", type=int, default=28, help="image height and width")
    parser.add_argument("--levels", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    kwargs = {k: v for k, v in yaml.safe_load(CONF.read_text()).items() if k not in ("_target_", "name")}
    spec = DataSpec("mnist-shape", (1, args.size, args.size), args.levels, (0.0, 1.0), 0, 0, "benchmark")
    torch.manual_seed(args.seed)
    model = PixelCNN(spec, **kwargs).eval()
    print(f"model kwargs {kwargs}; parameters {sum(p.numel() for p in model.parameters())}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, n {args.n}, shape {spec.shape}")
    samples, seconds = {}, {}
    for mode in ("cached", "naive"):
        start = time.perf_counter()
        samples[mode] = model.sample(args.n, torch.Generator().manual_seed(args.seed), mode=mode)
        seconds[mode] = time.perf_counter() - start
        print(f"{mode:6s}: {seconds[mode]:8.2f} s for {args.n} samples ({args.n / seconds[mode]:.3f} samples/s)")
    print(f"speed-up cached vs naive: {seconds['naive'] / seconds['cached']:.1f}x")
    print(f"identical samples: {torch.equal(samples['cached'], samples['naive'])}")


if __name__ == "__main__":
    main()
