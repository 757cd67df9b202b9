"""The device checks of benchmarks/gpu_bench.py: each model's short training run on the device, the Fréchet distance
on the GPU against pytorch-fid's CPU route, and Inception feature extraction (random weights, timing only).

`run` and `budget` are gpu_bench.Run and gpu_bench.Budget.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from gpu_bench_lines import ROOT, Section, build_model, error_text, model_configs

from genbench.metrics import speed
from genbench.metrics.speed_timing import device_traffic, shape_label, time_calls
from genbench.model import GenerativeModel

if TYPE_CHECKING:
    from gpu_bench import Budget, Run

# --------------------------------------------------------------------------------------------------------------
# Training on the device: each model's short run, finite losses, and the syncs/copies of one more step.


def mnist_folder() -> Path | None:
    candidates = [Path(os.environ["GENBENCH_DATA"]) / "mnist"] if os.environ.get("GENBENCH_DATA") else []
    candidates += [ROOT.parent / "shared" / "data" / "mnist", ROOT / "shared" / "data" / "mnist"]
    candidates += [ROOT.parents[1] / "shared" / "data" / "mnist"]
    return next((c for c in candidates if (c / "t10k-images-idx3-ubyte.gz").exists()), None)


def training_data(shape: tuple[int, int, int]) -> tuple[torch.Tensor, Any, str]:
    """The MNIST test split (10,000 images) when found and the shape is MNIST's, else random images, labelled."""
    from genbench.data import DataSpec, images_to_tensor, read_idx

    folder = mnist_folder()
    if folder is not None and tuple(shape) == (1, 28, 28):
        x = images_to_tensor(read_idx(folder / "t10k-images-idx3-ubyte.gz")[:, None])
        source = f"MNIST test split ({len(x)} images) from {folder}"
    else:
        why = "smoke size" if folder is not None else "MNIST not found ($GENBENCH_DATA/mnist, ../shared/data/mnist)"
        x = torch.randint(0, 256, (2048, *shape), generator=torch.Generator().manual_seed(0)) / 255.0
        source = f"random images ({why}): a device check, not a training result"
    return x, DataSpec("mnist", tuple(shape), 256, (0.0, 1.0), len(x), 0, source), source


def step_traffic(model: GenerativeModel, x: torch.Tensor) -> dict[str, Any]:
    """Ops, syncs and copies of one more train_step; on CUDA also the syncs torch.cuda.set_sync_debug_mode reports
    (a second opinion, from inside the CUDA calls). Sampling's traffic is counted by the speed parts."""
    model.train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if x.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with device_traffic() as traffic:
                model.train_step(x)
        finally:
            if x.device.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
    out = {**traffic.as_dict(), "where": dict(traffic.where.most_common(5))}
    if x.device.type == "cuda":
        out["cuda_sync_warnings"] = sum("synchroniz" in str(w.message).lower() for w in caught)
    return out


def part_train(run: Run, name: str, budget: Budget) -> None:
    from genbench.train import TrainConfig, read_curve, train

    settings, device = run.settings, run.device
    tc = settings["train"]
    entry = run.part(name, 0.0)
    data, spec, source = training_data(tc["shape"])
    entry["data"] = source
    configs = model_configs()
    deadline = budget.part(name)
    entry["share_s"] = round(deadline - time.monotonic(), 1)
    run.say(f"{name}: {len(configs)} models on {source}, {entry['share_s']:.0f} s")
    for i, (model_name, cfg) in enumerate(configs.items()):
        line_deadline = budget.line(deadline, len(configs) - i)
        share = line_deadline - time.monotonic()
        if share <= 0:
            entry["skipped"].append(f"{model_name}: the share is spent")
            continue
        row: dict[str, Any] = {"model": model_name, "shape": shape_label(spec.shape), "batch_size": tc["batch_size"]}
        try:
            model = build_model(model_name, cfg, spec, settings["overrides"]).to(device)
            model.configure_optimizers()
            with tempfile.TemporaryDirectory() as tmp:
                config = TrainConfig(
                    batch_size=tc["batch_size"],
                    max_steps=tc["steps"],
                    max_minutes=0.7 * share / 60,
                    checkpoint_every=10**9,
                    log_every=max(1, tc["steps"] // 10),
                    device=str(device),
                    resume=False,
                )
                result = train(model, data, config, Path(tmp), 0, {})
                curve = read_curve(Path(tmp) / "curve.csv", 10**9)
            row.update(steps=result.steps, wall_s=result.wall_time_s, stopped_by=result.stopped_by)
            row["steps_per_s"] = result.steps / result.wall_time_s if result.wall_time_s > 0 else None
            if curve:
                first_key = next(k for k in curve[0] if k != "step")
                row.update(loss_name=first_key, loss_first=curve[0][first_key], loss_last=curve[-1][first_key])
                row["finite"] = all(math.isfinite(v) for r in curve for v in r.values())
            row["traffic"] = step_traffic(model, data[: tc["batch_size"]].to(device))
            row["status"] = "ok"
        except Exception as err:  # NonFiniteLossError included: the record says which model and why
            row.update(status="error", error=error_text(err))
        if time.monotonic() < line_deadline:  # bf16 autocast: a few steps, to check it runs and stays finite
            try:
                model = build_model(model_name, cfg, spec, settings["overrides"]).to(device)
                model.configure_optimizers()
                with tempfile.TemporaryDirectory() as tmp:
                    minutes = max(line_deadline - time.monotonic(), 0.0) / 60
                    amp = TrainConfig(tc["batch_size"], tc["amp_steps"], minutes, 10**9, 1, str(device), amp=True)
                    result = train(model, data, amp, Path(tmp), 0, {})
                    curve = read_curve(Path(tmp) / "curve.csv", 10**9)
                row["amp"] = {"status": "ok", "steps": result.steps, "precision": result.precision}
                row["amp"]["finite"] = all(math.isfinite(v) for r in curve for v in r.values())
            except Exception as err:
                row["amp"] = {"status": "error", "error": error_text(err)}
        else:
            entry["skipped"].append(f"{model_name}: bf16 autocast check (share spent)")
        entry["results"].append(row)
        run.say(
            f"{name} {model_name}: {row['status']} {row.get('steps')} steps, loss {row.get('loss_first')} -> "
            f"{row.get('loss_last')}, amp {row.get('amp', {}).get('status')}"
        )
    run.finish(entry)


# --------------------------------------------------------------------------------------------------------------
# The Fréchet distance on the GPU against pytorch-fid's CPU route; Inception features with random weights.


def part_frechet(run: Run, name: str, budget: Budget) -> None:
    settings, device = run.settings, run.device
    entry = run.part(name, 0.0)
    deadline = budget.part(name)
    entry["share_s"] = round(deadline - time.monotonic(), 1)
    try:
        import numpy as np

        from genbench.metrics.frechet import frechet_distance
    except ImportError as err:
        entry["skipped"].append(f"Fréchet distance: genbench.metrics.fid needs numpy and scipy ({err})")
        entry["used_s"] = 0.0
        return
    dim = settings["frechet_dim"]
    rng = np.random.default_rng(0)
    stats = []
    for n in (dim + 500, dim + 1000):
        feats = rng.standard_normal((n, dim)) @ (rng.standard_normal((dim, dim)) / np.sqrt(dim))
        stats.append((feats.mean(0), np.cov(feats, rowvar=False)))
    (mu1, s1), (mu2, s2) = stats
    routes: dict[str, Callable[[], float]] = {"genbench_numpy_cpu": lambda: frechet_distance(mu1, s1, mu2, s2)}
    if device.type != "cpu":
        routes[f"genbench_torch_{device.type}"] = lambda: frechet_distance(mu1, s1, mu2, s2, device=device)
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
    except ImportError as err:
        entry["skipped"].append(f"pytorch-fid's CPU route: pytorch-fid is not installed ({err})")
    else:
        small = min(dim, 512)  # its sqrtm grows as dim^3: predict the full size from a smaller one
        start = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calculate_frechet_distance(mu1[:small], s1[:small, :small], mu2[:small], s2[:small, :small])
        predicted = (time.monotonic() - start) * (dim / small) ** 3
        if predicted < 0.8 * (deadline - time.monotonic()):
            routes["pytorch_fid_cpu"] = lambda: calculate_frechet_distance(mu1, s1, mu2, s2)
        else:
            entry["skipped"].append(f"pytorch-fid at {dim}-d: predicted {predicted:.3g} s > the share left")
    for route, fn in routes.items():
        times, value = [], None
        for _ in range(3 if "torch" in route else 1):  # the first GPU call pays for its kernels: repeat it
            if time.monotonic() > deadline:
                entry["skipped"].append(f"{route}: share spent")
                break
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.monotonic()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.monotonic() - start)
        if times:
            entry["results"].append(
                {"check": "frechet", "route": route, "dim": dim, "value": value, "times_s": times, "best_s": min(times)}
            )
            run.say(f"{name} {route}: {min(times):.3g} s, value {value:.6g}")
    inception_features(run, entry, deadline)
    run.finish(entry)


def inception_features(run: Run, entry: dict[str, Any], deadline: float) -> None:
    """pytorch-fid's Inception (FID blocks, random weights: timing only) on 32x32x3 images resized to 299."""
    settings, device = run.settings, run.device
    batch = settings["inception_batch"]
    if batch is None:
        entry["skipped"].append("Inception features: not in the smoke run (seconds per image on a CPU)")
        return
    try:
        from unittest import mock

        from pytorch_fid import inception as pfi

        def random_weights() -> torch.nn.Module:  # pytorch-fid's fid_inception_v3 without loading the weights
            net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
            net.Mixed_5b, net.Mixed_5c = pfi.FIDInceptionA(192, 32), pfi.FIDInceptionA(256, 64)
            net.Mixed_5d, net.Mixed_6b = pfi.FIDInceptionA(288, 64), pfi.FIDInceptionC(768, 128)
            net.Mixed_6c, net.Mixed_6d = pfi.FIDInceptionC(768, 160), pfi.FIDInceptionC(768, 160)
            net.Mixed_6e, net.Mixed_7b = pfi.FIDInceptionC(768, 192), pfi.FIDInceptionE_1(1280)
            net.Mixed_7c = pfi.FIDInceptionE_2(2048)
            return net

        with mock.patch.object(pfi, "fid_inception_v3", random_weights):
            net = pfi.InceptionV3([3], resize_input=True, normalize_input=True).to(device).eval()
    except Exception as err:
        entry["skipped"].append(f"Inception features: pytorch-fid/torchvision unavailable ({error_text(err)})")
        return
    for dtype in ("fp32", "bf16"):
        left = deadline - time.monotonic()
        if left <= 0:
            entry["skipped"].append(f"Inception features {dtype}: share spent")
            continue
        point = {"mode": "inception", "dtype": dtype, "batch_size": batch}
        call = speed.sampler(_FeatureModel(net, device), batch, "default", dtype, None)
        sc = Section(settings["point"], budget_s=min(settings["point"]["budget_s"], left))
        try:
            with torch.inference_mode():
                timing = time_calls(call, device, sc.repeats, sc.warmup, sc.budget_s, 1)
            point.update(status="ok", **speed.timing_fields(timing, batch))
        except Exception as err:
            point.update(status="error", error=error_text(err))
        entry["results"].append({"check": "inception_features", "weights": "random (timing only)", **point})
        run.say(f"inception features {dtype} b{batch}: {point.get('latency_median_s', point['status'])}")


class _FeatureModel:
    """Inception feature extraction behind the `sample(n, generator, mode)` call the speed sampler times."""

    def __init__(self, net: torch.nn.Module, device: torch.device) -> None:
        self.net, self.device = net, device
        self.x = torch.rand(1, 3, 32, 32, device=device)

    def sample(self, n: int, generator: Any = None, mode: str | None = None) -> torch.Tensor:
        if len(self.x) != n:
            self.x = torch.rand(n, 3, 32, 32, device=self.device)
        return self.net(self.x)[0]
