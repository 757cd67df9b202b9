"""Selection: the GSN's corruption and chain state on digits (or `--dataset`), chosen on the validation split.

Claim (d) needs a GSN that is a fair representative of its family, so its corruption (salt-and-pepper or Gaussian,
and the level) and its chain's state (a draw from `P(x | x~)` or its mean) are chosen here, not guessed. Every
candidate trains with the pipeline's batches (genbench.train.BatchSampler) for the default number of steps on the
training split, and is scored against the **validation split** (never trained on; the test split is not looked
at): FID and recall (k = 3) on the domain classifier's features of chain states after 100 and 1,000 steps from
uniform noise (the default sampler and a long chain, where a chain that drifts out of the data shows it), and the
number of distinct classes one chain visits in 1,000 steps. The candidate with the lowest FID, averaged over seeds
and both chain lengths, becomes the default of conf/model/gsn.yaml (chosen on digits). `--dataset teacher` runs the
same selection on another labelled image set (written as gsn_noise_selection_<dataset>.*), to see whether the
digits choice carries over.

Run:  OMP_NUM_THREADS=1 python benchmarks/gsn_noise_selection.py --seeds 0,1
      python benchmarks/gsn_noise_selection.py --quick   (300 steps, one seed; *_quick.* files)
Writes results/benchmarks/gsn_noise_selection.json and .md (or gsn_noise_selection_quick.*).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from genbench.datasets import load_dataset
from genbench.metrics.features import build_extractor, extract
from genbench.metrics.frechet import frechet_distance_features
from genbench.metrics.mixing import chain_classes
from genbench.metrics.precision_recall import precision_recall
from genbench.model import GenerativeModel
from genbench.pipeline import build_model
from genbench.results import git_commit, package_versions, write_benchmark
from genbench.train import BatchSampler

ROOT = Path(__file__).resolve().parents[1]
# (name, GSN arguments): the former default first, then the chain that draws its next state, by corruption.
CANDIDATES: list[tuple[str, dict[str, Any]]] = [
    ("mean, salt-and-pepper 0.4 (former)", {"state": "mean", "noise": "salt_pepper", "noise_level": 0.4}),
    ("draw, salt-and-pepper 0.2", {"state": "sample", "noise": "salt_pepper", "noise_level": 0.2}),
    ("draw, salt-and-pepper 0.4", {"state": "sample", "noise": "salt_pepper", "noise_level": 0.4}),
    ("draw, Gaussian 0.1", {"state": "sample", "noise": "gaussian", "noise_level": 0.1}),
    ("draw, Gaussian 0.2", {"state": "sample", "noise": "gaussian", "noise_level": 0.2}),
    ("draw, Gaussian 0.3", {"state": "sample", "noise": "gaussian", "noise_level": 0.3}),
    ("draw, Gaussian 0.5", {"state": "sample", "noise": "gaussian", "noise_level": 0.5}),
]
CHAIN_STEPS = (100, 1000)
N_GEN = 1000  # chains scored for FID (the validation split has 150 rows: FID carries its small-sample bias,
# the same for every candidate)
MIX_CHAINS, MIX_STRIDE = 20, 10


def train(settings: dict[str, Any], data: Any, steps: int, batch: int, seed: int) -> GenerativeModel:
    """The GSN of conf/model/gsn.yaml with `settings` overridden, trained `steps` steps on the training split."""
    torch.manual_seed(seed)
    model_cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/model/gsn.yaml"))
    model = build_model({**model_cfg, **settings}, data.spec)
    model.configure_optimizers()
    sampler = BatchSampler(data.train, batch, seed)
    for step in range(steps):
        model.train_step(sampler.batch(step))
    return model.eval()


def score(model: GenerativeModel, extractor: Any, valid_features: np.ndarray, seed: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(10_000 + seed)
    states = model.sample_chain(N_GEN, list(CHAIN_STEPS), gen)
    out: dict[str, Any] = {}
    for steps, x in states.items():
        feats = extract(extractor, x, 256, progress=False)
        precision, recall = precision_recall(valid_features, feats[: len(valid_features)], k=3)
        out[f"fid_{steps}"] = frechet_distance_features(valid_features, feats)
        out[f"precision_{steps}"], out[f"recall_{steps}"] = precision, recall
    mix_gen = torch.Generator().manual_seed(20_000 + seed)
    labels = chain_classes(model, extractor.classify, MIX_CHAINS, MIX_STRIDE, max(CHAIN_STEPS), mix_gen)
    out["classes_visited"] = statistics.fmean(len(set(row.tolist())) for row in labels)
    return out


def table(rows: list[dict[str, Any]], chosen: str) -> str:
    head = ["candidate", "seeds", *(f"FID {s}" for s in CHAIN_STEPS), *(f"recall {s}" for s in CHAIN_STEPS)]
    lines = ["| " + " | ".join([*head, "classes in 1,000 steps", "selection FID"]) + " |"]
    lines.append("|" + " --- |" * (len(head) + 2))
    for r in rows:
        mark = " **(chosen)**" if r["candidate"] == chosen else ""
        cells = [r["candidate"] + mark, str(len(r["runs"]))]
        for key in [*(f"fid_{s}" for s in CHAIN_STEPS), *(f"recall_{s}" for s in CHAIN_STEPS), "classes_visited"]:
            vals = [run[key] for run in r["runs"]]
            cells.append(" / ".join(f"{v:.3g}" for v in vals))
        cells.append(f"{r['selection_fid']:.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="300 steps, seed 0: a smoke run (*_quick files)")
    parser.add_argument("--dataset", default="digits", help="an image data set with labels (digits, teacher)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results/benchmarks")
    args = parser.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    steps = 300 if args.quick else args.steps
    data = load_dataset(args.dataset, valid_fraction=0.1)
    fcfg = OmegaConf.load(ROOT / "conf/eval/default.yaml").features
    extractor = build_extractor("domain", data, fcfg, torch.device("cpu"))
    valid_features = extract(extractor, data.valid, 256, progress=False)
    rows, started, load_before = [], time.perf_counter(), os.getloadavg()
    for name, settings in tqdm(CANDIDATES, desc="candidates", unit="candidate"):
        runs = [{"seed": s, **score(train(settings, data, steps, args.batch, s), extractor, valid_features, s)}
                for s in seeds]  # fmt: skip
        selection = statistics.fmean(run[f"fid_{k}"] for run in runs for k in CHAIN_STEPS)
        rows.append({"candidate": name, "settings": settings, "runs": runs, "selection_fid": selection})
        tqdm.write(f"{name}: selection FID {selection:.4g}")
    chosen = min(rows, key=lambda r: r["selection_fid"])
    record = {
        "benchmark": "gsn_noise_selection",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "dataset": {"name": args.dataset, "n_train": len(data.train), "n_valid": len(data.valid), "scored_on": "valid"},
        "features": {"name": extractor.name, "key": extractor.key, **extractor.extra},
        "protocol": {
            "steps": steps,
            "batch": args.batch,
            "seeds": seeds,
            "chain_steps": list(CHAIN_STEPS),
            "n_gen": N_GEN,
            "recall_n": len(valid_features),
            "k": 3,
            "mixing": {"chains": MIX_CHAINS, "stride": MIX_STRIDE, "steps": max(CHAIN_STEPS)},
            "selection": "lowest validation FID, mean over seeds and chain lengths",
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "wall_s": time.perf_counter() - started,
        "chosen": chosen["candidate"],
        "candidates": rows,
    }
    stem = "gsn_noise_selection" + ("" if args.dataset == "digits" else f"_{args.dataset}") + ("_quick" * args.quick)
    intro = (
        f"GSN on {args.dataset}, {steps} steps, seeds {', '.join(map(str, seeds))}; scored on the validation split "
        f"({len(valid_features)} rows, domain features): FID of {N_GEN} chains after 100 and 1,000 steps, recall "
        f"(k=3, {len(valid_features)} states), classes one of {MIX_CHAINS} chains visits in 1,000 steps. Values per "
        f"seed. Chosen: {chosen['candidate']}. From `python benchmarks/gsn_noise_selection.py"
        f"{'' if args.dataset == 'digits' else ' --dataset ' + args.dataset}`.\n\n"
    )
    write_benchmark(args.out_dir, stem, record, intro + table(rows, chosen["candidate"]))


if __name__ == "__main__":
    main()
