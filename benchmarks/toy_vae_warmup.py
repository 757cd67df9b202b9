"""Toy VAE KL to truth with and without KL warm-up (issue: the toy VAE collapsed to one Gaussian).

Trains as `genbench bench` does (batch 64 from `BatchSampler`, 3,000 steps, the model's defaults) and scores
`E_test[log p_true - IWAE-100]` on the first 2,000 test points, so it is the bench's `kl_to_truth` on a smaller
test set and a shorter IWAE (the bench: 5,000 points, IWAE-100 by default, IWAE-1000 in claims_toy_vae).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toy_vae_warmup.py '{"combos": [["ring8", 32, 1, 0]], "kl_warmup": 0}'

`combos` are [mixture, width, train_k, seed]; the other keys go to `models.vae.VAE` (kl_warmup 0 = before the fix).
"""

from __future__ import annotations

import json
import sys
import time

import torch

from genbench.data import load_toy2d
from genbench.train import BatchSampler
from models.vae import VAE


def kl_to_truth(
    mixture: str, width: int, train_k: int, seed: int, steps: int = 3000, k_eval: int = 100, n_test: int = 2000, **kw
) -> tuple[float, float]:
    torch.manual_seed(seed)
    data = load_toy2d(mixture)
    vae = VAE(data.spec, width=width, train_k=train_k, **kw)
    vae.configure_optimizers()
    batches, start = BatchSampler(data.train, 64, seed), time.time()
    for step in range(steps):
        vae.train_step(batches.batch(step))
    vae.eval()
    x, gen = data.test[:n_test], torch.Generator().manual_seed(1234)
    with torch.no_grad():
        lp = torch.cat([vae.log_prob_bound(x[i : i + 500], k_eval, generator=gen) for i in range(0, len(x), 500)])
    return float((data.density.log_density(x) - lp.double()).mean()), time.time() - start


if __name__ == "__main__":
    kw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    for mixture, width, k, seed in kw.pop("combos", [["ring8", 32, 1, 0]]):
        kl, dt = kl_to_truth(mixture, width, k, seed, **kw)
        print(f"{mixture} w{width} k{k} s{seed} {kw} KL={kl:.3f} ({dt:.0f}s)", flush=True)
