"""One prepared command for a short GPU window: the headline speed numbers and a device check of every model.

    make gpu-bench              # at most 8 minutes on one GPU; records under results/gpu/<device>/
    make gpu-bench SMOKE=1      # the same script on the CPU at tiny sizes, well under two minutes (CI)
    PYTHONPATH=. python benchmarks/gpu_bench.py [--smoke] [--parts speed_28,train] [--out DIR] [--limit-s S]

Parts, in order (each gets a share of the time left, in proportion to `SHARES`; a line stops at its share and the
record says what it skipped and why; a watchdog ends the process at the limit with what was measured written):
`speed_28` and `speed_32` time exactly `model.sample(n)` (genbench.metrics.speed.measure_point) for every
conf/model yaml, every sampling mode, fp32 and bf16 autocast, at batch 1 and at the largest batch that fits (a
bounded x16 ladder, one bisection after an out-of-memory), with FLOPs per sample of one-pass samplers (the GAN's
fraction of the device's peak) and the ops/syncs/copies of one call; `pixelcnn` checks that cached and naive
PixelCNN draw the same samples and times both at one batch size; `train` runs each model's short training on the
MNIST test split (found at $GENBENCH_DATA/mnist or ../shared/data/mnist; random images when absent, labelled) on
the device, checks the losses are finite, and counts the syncs and copies of one more step; `frechet` times the
Fréchet distance of 2048-d statistics on the GPU against pytorch-fid's CPU route (skipped with the reason when
pytorch-fid is absent) and Inception feature extraction with random weights (timing only).

Needs torch and numpy; runs from the repository with PYTHONPATH=. and no install: it imports no hydra, omegaconf
or antlr4 (model yamls are read with PyYAML if present, else a minimal reader), tqdm is stubbed when absent,
pytorch-fid, scipy, torchvision and matplotlib are optional (their parts say so when absent).
"""

from __future__ import annotations

import time

# ruff: noqa: E402 - the clock starts before torch's import, so the limit counts the whole process
T0 = time.monotonic()

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TQDM_DISABLE", "1")  # the trainer's progress bars would drown the bench's own lines


def _stub_tqdm() -> None:
    """genbench imports tqdm for progress bars only; a machine without it gets a silent stand-in."""
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:

        class Bar:
            def __init__(self, iterable: Any = None, *args: Any, **kwargs: Any) -> None:
                self.iterable = iterable

            def __iter__(self) -> Any:
                return iter(self.iterable or [])

            def __enter__(self) -> Bar:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def update(self, *args: Any) -> None: ...
            def set_postfix(self, *args: Any, **kwargs: Any) -> None: ...
            def close(self) -> None: ...

        module = types.ModuleType("tqdm")
        auto = types.ModuleType("tqdm.auto")
        module.tqdm = auto.tqdm = Bar
        module.auto = auto
        sys.modules.update({"tqdm": module, "tqdm.auto": auto})


_stub_tqdm()

import torch

from genbench.metrics.speed_timing import count_flops, cpu_model, device_slug, environment
from genbench.results import atomic_write_text, device_name, git_commit, package_versions

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench's other modules, beside it
import gpu_bench_summary
from gpu_bench_checks import part_frechet, part_train
from gpu_bench_lines import error_text, part_equivalent_modes, part_speed, yaml_reader

SCHEMA_VERSION = 1
# Relative time shares of the parts (the full run's plan in seconds at a 455-s budget, see `plan`).
SHARES = {"speed_28": 130.0, "pixelcnn": 35.0, "train": 75.0, "frechet": 45.0, "speed_32": 140.0}
# Smoke: tiny networks, so the CPU run exercises every line in seconds.
TINY: dict[str, dict[str, object]] = {
    "gan": {"width": 4, "latent_dim": 4},
    "vae": {"width": 4, "latent_dim": 2},
    "nice": {"hidden": 8, "n_hidden": 1},
    "realnvp": {"hidden": 4},
    "dbm": {"hidden1": 8, "hidden2": 4, "pretrain_steps": 2, "pcd_chains": 4, "gibbs_steps": 3},
    "gsn": {"hidden_dim": 8, "burn_in": 3},
    "pixelcnn": {"channels": 4, "n_layers": 2, "head_channels": 4},
    "pixelrnn": {"hidden": 4, "output_hidden": 4},
}


def plan(smoke: bool, limit_s: float | None) -> dict[str, Any]:
    """What the run measures and how long it may take."""
    if smoke:
        return {
            "smoke": True,
            "limit_s": limit_s or 75.0,
            "sizes": {"speed_28": (1, 8, 8), "speed_32": (3, 8, 8)},
            "batches": [1, 4, 16],
            "dtypes": ["fp32", "bf16"],
            "point": {"repeats": 2, "warmup": 0, "min_repeats": 1, "budget_s": 0.5},
            "pixelcnn_batch": 4,
            "train": {"shape": (1, 8, 8), "steps": 6, "batch_size": 16, "amp_steps": 3},
            "frechet_dim": 64,
            "inception_batch": None,  # Inception at 299x299 costs seconds per image on a CPU
            "overrides": TINY,
        }
    return {
        "smoke": False,
        "limit_s": limit_s or 455.0,
        "sizes": {"speed_28": (1, 28, 28), "speed_32": (3, 32, 32)},
        "batches": [1, 16, 256, 4096, 65536, 262144, 1048576],
        "dtypes": ["fp32", "bf16"],
        "point": {"repeats": 3, "warmup": 1, "min_repeats": 1, "budget_s": 8.0},
        "pixelcnn_batch": 64,
        "train": {"shape": (1, 28, 28), "steps": 300, "batch_size": 64, "amp_steps": 20},
        "frechet_dim": 2048,
        "inception_batch": 128,
        "overrides": {},
    }


# --------------------------------------------------------------------------------------------------------------
# Budget: a share of the time left per part, of the part's time left per line; a watchdog for the hard limit.


class Budget:
    """Deadlines: each part gets the time left times its share of the shares not yet spent."""

    def __init__(self, limit_s: float, shares: dict[str, float], reserve_s: float) -> None:
        self.end = T0 + limit_s - reserve_s  # the reserve writes the summary and the plot
        self.shares = dict(shares)

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def part(self, name: str) -> float:
        total = sum(self.shares.values())
        share = self.shares.pop(name)
        return self.now() + max(self.end - self.now(), 0.0) * share / total

    @staticmethod
    def line(deadline: float, lines_left: int) -> float:
        return time.monotonic() + max(deadline - time.monotonic(), 0.0) / max(lines_left, 1)


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {message}", flush=True)


class Run:
    """The record being built, written after every part (and by the watchdog) so a kill loses little."""

    def __init__(self, out: Path, settings: dict[str, Any], device: torch.device) -> None:
        self.out, self.settings, self.device = out, settings, device
        self.lock = threading.Lock()
        self.record: dict[str, Any] = {
            "kind": "gpu_bench",
            "schema_version": SCHEMA_VERSION,
            "smoke": settings["smoke"],
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "make gpu-bench" + (" SMOKE=1" if settings["smoke"] else ""),
            "git_commit": git_commit(),
            "environment": describe_environment(device),
            "load_avg_1m": {"start": _load()},
            "plan": {k: v for k, v in settings.items() if k != "overrides"},
            "parts": {},
        }

    @staticmethod
    def say(message: str) -> None:
        say(message)

    @staticmethod
    def finish(entry: dict[str, Any]) -> None:
        entry["used_s"] = round(time.monotonic() - T0 - entry["started_s"], 1)

    def part(self, name: str, share_s: float) -> dict[str, Any]:
        entry = {"share_s": round(share_s, 1), "started_s": round(time.monotonic() - T0, 1), "results": []}
        entry["skipped"] = []
        with self.lock:
            self.record["parts"][name] = entry
        return entry

    def write(self, finished_by: str | None = None) -> list[Path]:
        with self.lock:
            self.record["load_avg_1m"]["end"] = _load()
            self.record["wall_s"] = round(time.monotonic() - T0, 1)
            if finished_by:
                self.record["finished_by"] = finished_by
            text = json.dumps(_finite(self.record), indent=1) + "\n"
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "gpu_bench.json", text)
        return [self.out / "gpu_bench.json", *gpu_bench_summary.write(json.loads(text), self.out)]


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def start_watchdog(run: Run, limit_s: float) -> None:
    """At the limit, write what was measured and end the process, whatever the main thread is doing."""

    def watch() -> None:
        time.sleep(max(T0 + limit_s - time.monotonic(), 0.0))
        say(f"watchdog: the {limit_s:.0f} s limit is reached; writing what was measured and stopping")
        try:
            for _ in range(3):  # the main thread may be appending to the record: try again on a changed dict
                try:
                    run.write(finished_by=f"watchdog at {limit_s:.0f} s")
                    break
                except RuntimeError:
                    time.sleep(0.2)
        finally:
            os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def describe_environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {**environment(device), "cpu_model": cpu_model(), "python": sys.version.split()[0]}
    env["packages"] = {k: v for k, v in package_versions().items() if k != "python"}
    env["yaml_reader"] = yaml_reader()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            gpu_memory_bytes=props.total_memory,
            gpu_count=torch.cuda.device_count(),
            matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
            cudnn_tf32=torch.backends.cudnn.allow_tf32,
        )
    return env


# --------------------------------------------------------------------------------------------------------------


PARTS = ("speed_28", "pixelcnn", "train", "frechet", "speed_32")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/gpu/<device>/)")
    parser.add_argument("--limit-s", type=float, default=None, help="wall seconds for the whole process")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; accepted: {', '.join(PARTS)}")
    settings = plan(args.smoke, args.limit_s)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu-bench: no CUDA device here; `make gpu-bench SMOKE=1` runs the CPU smoke version", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.smoke else torch.device("cuda", torch.cuda.current_device())
    if args.smoke:
        torch.set_num_threads(1)
    suffix = " (smoke)" if args.smoke else ""
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="genbench-gpu-bench-smoke-"))
        if args.smoke
        else ROOT / "results" / "gpu" / device_slug(device)
    )
    run = Run(out, settings, device)
    run.record["device"] = device_name(device) + suffix
    limit = settings["limit_s"]
    start_watchdog(run, limit + 10.0)
    budget = Budget(limit, {p: SHARES[p] for p in parts}, reserve_s=8.0 if not args.smoke else 4.0)
    say(f"gpu-bench on {device_name(device)}: parts {', '.join(parts)}; limit {limit:.0f} s; out {out}")
    count_flops(lambda: torch.ones(2, 2) @ torch.ones(2, 2))  # its first use loads modules: not in a line's share
    guesses: dict[tuple[str, str, str], float] = {}
    for part in parts:
        try:
            if part.startswith("speed"):
                part_speed(run, part, budget, guesses)
            else:
                {"pixelcnn": part_equivalent_modes, "train": part_train, "frechet": part_frechet}[part](
                    run, part, budget
                )
        except Exception as err:  # a part's own bug: record it, go on with the next part
            run.record["parts"].setdefault(part, {"results": [], "skipped": []})["error"] = error_text(err)
            say(f"{part}: failed: {error_text(err)}")
        run.write()
    written = run.write(finished_by="completed")
    say("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
