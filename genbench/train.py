"""The training loop shared by every model: budgets, progress, curve, checkpoints, resume, NaN guard.

The loop knows nothing about a model beyond the contract: it calls `train_step(x)` and logs the
scalars it returns. Batches are a pure function of (seed, step), and the global torch RNG state is
checkpointed, so a resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genbench.errors import GenbenchError, NonFiniteLossError
from genbench.model import GenerativeModel
from genbench.results import atomic_write, atomic_write_text

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"
SNAPSHOT_DIR = "snapshots"
CURVE_NAME = "curve.csv"
CHECKPOINT_FORMAT = "genbench-checkpoint-1"
# What resuming needs from a checkpoint; `load_checkpoint` refuses one without them before anything uses it.
CHECKPOINT_KEYS = ("step", "wall_time_s", "model_state", "optimizer_states", "torch_rng_state")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass
class TrainConfig:
    """`conf/train/default.yaml`, typed: Hydra checks the types (genbench/config_schema.py), this the ranges."""

    batch_size: int = 64
    max_steps: int = 3000
    max_minutes: float | None = None
    checkpoint_every: int = 500
    log_every: int = 25
    device: str = "auto"
    amp: bool = False
    resume: bool = True
    keep_snapshots: bool = False  # also keep the weights of every checkpoint, as snapshots/step<k>.pt

    def __post_init__(self) -> None:
        for key in ("batch_size", "max_steps", "checkpoint_every", "log_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise GenbenchError(f"train.{key}={value!r}: accepted: an integer > 0")
        if self.max_minutes is not None and not (isinstance(self.max_minutes, int | float) and self.max_minutes > 0):
            raise GenbenchError(f"train.max_minutes={self.max_minutes!r}: accepted: a number > 0, or null for none")
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise GenbenchError(f"train.device={self.device!r}: accepted: auto, cpu, cuda, cuda:N")


@dataclass
class TrainResult:
    steps: int
    wall_time_s: float
    stopped_by: str  # "max_steps" or "max_minutes"
    resumed_from: int | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenbenchError(f"train.device={name!r} but no CUDA device is available; use train.device=auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise GenbenchError(f"train.device={name!r} but this machine has {count} CUDA device(s): cuda:0..{count - 1}")
    return device


class BatchSampler:
    """Shuffled mini-batches as a pure function of (seed, step): resuming needs no sampler state."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int) -> None:
        self.data, self.seed = data, seed
        self.batch_size = min(batch_size, len(data))
        self.steps_per_epoch = len(data) // self.batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def batch(self, step: int) -> torch.Tensor:
        epoch, j = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(len(self.data), generator=gen)
        return self.data[self._perm[j * self.batch_size : (j + 1) * self.batch_size]]


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, model: GenerativeModel, step: int, wall_time_s: float, meta: dict[str, Any]) -> None:
    """Self-describing checkpoint (model target + arguments + data spec + step), written atomically."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "wall_time_s": wall_time_s,
        "model_state": model.state_dict(),
        "optimizer_states": {name: opt.state_dict() for name, opt in model.optimizers.items()},
        "torch_rng_state": torch.get_rng_state(),
        **meta,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / SNAPSHOT_DIR / f"step{step:08d}.pt"


def save_snapshot(run_dir: Path, model: GenerativeModel, step: int) -> None:
    """The model's weights at `step` (what quality-over-training metrics evaluate), written atomically."""
    state = {"format": CHECKPOINT_FORMAT, "step": step, "model_state": model.state_dict()}
    atomic_write(snapshot_path(run_dir, step), lambda tmp: torch.save(state, tmp))


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """The kept snapshots of a run, `(step, path)` in step order."""
    found = sorted((run_dir / SNAPSHOT_DIR).glob("step*.pt"))
    return [(int(p.stem.removeprefix("step")), p) for p in found]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with `weights_only=True`; a corrupt or foreign file gets one clear line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt/foreign pickles
        raise GenbenchError(
            f"cannot load checkpoint {path}: not a genbench checkpoint or corrupt ({type(err).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise GenbenchError(f"{path} is not a genbench checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise GenbenchError(f"{path} is an incomplete genbench checkpoint (lacks {', '.join(missing)}); delete it")
    return state


def restore(model: GenerativeModel, state: dict[str, Any]) -> None:
    model.load_state_dict(state["model_state"])
    for name, opt in model.optimizers.items():
        opt.load_state_dict(state["optimizer_states"][name])
    torch.set_rng_state(state["torch_rng_state"])


# ----------------------------------------------------------------------------- curve


def read_curve(path: Path, up_to_step: int) -> list[dict[str, float]]:
    """Rows of an existing curve up to (and including) `up_to_step`; later rows belong to a lost future."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f) if float(row["step"]) <= up_to_step]


def write_curve(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- the loop


def train(
    model: GenerativeModel,
    train_data: torch.Tensor,
    cfg: TrainConfig,
    run_dir: Path,
    seed: int,
    checkpoint_meta: dict[str, Any],
) -> TrainResult:
    """Train `model` in place until a budget is hit; checkpoint to `run_dir` as it goes.

    Args:
        model: a model already on its device, with `configure_optimizers()` called.
        train_data: the training split, in pipeline units, on the CPU.
        cfg: budgets, batch size, checkpointing, AMP.
        run_dir: where `checkpoint.pt` and `curve.csv` live; an existing checkpoint is resumed.
        seed: the run's seed (batches are a function of it).
        checkpoint_meta: what makes the checkpoint self-describing (model target, arguments, spec, config).

    Raises:
        NonFiniteLossError: a step returned NaN/Inf; the last good checkpoint is left as it was.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, curve_path = run_dir / CHECKPOINT_NAME, run_dir / CURVE_NAME
    step, elapsed_before, resumed_from = 0, 0.0, None
    if cfg.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        restore(model, state)
        step, elapsed_before, resumed_from = state["step"], state["wall_time_s"], state["step"]
        log.info("resuming from step %d (checkpoint %s)", step, ckpt_path)
    curve = read_curve(curve_path, step)
    sampler = BatchSampler(train_data, cfg.batch_size, seed)
    device = model.device
    use_amp = cfg.amp and device.type == "cuda"
    start, stopped_by = time.perf_counter(), "max_steps"
    last_good = resumed_from

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start

    model.train()
    with tqdm(total=cfg.max_steps, initial=step, desc=f"train {type(model).__name__}", dynamic_ncols=True) as bar:
        while step < cfg.max_steps:
            if cfg.max_minutes is not None and elapsed() > 60 * cfg.max_minutes:
                stopped_by = "max_minutes"
                break
            x = sampler.batch(step).to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                scalars = model.train_step(x)
            bad = {k: v for k, v in scalars.items() if not math.isfinite(v)}
            if bad:
                where = f"step {last_good} in {ckpt_path}" if last_good is not None else "none was written yet"
                raise NonFiniteLossError(
                    f"non-finite training scalars {bad} at step {step + 1}; stopped. Last good checkpoint: {where}"
                )
            step += 1
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                curve.append({"step": float(step), **scalars})
                bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items()}, refresh=False)
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                save_checkpoint(ckpt_path, model, step, elapsed(), checkpoint_meta)
                write_curve(curve_path, curve)
                last_good = step
                if cfg.keep_snapshots:
                    save_snapshot(run_dir, model, step)
            bar.update(1)
    if last_good != step:  # stopped by the time budget between checkpoints
        save_checkpoint(ckpt_path, model, step, elapsed(), checkpoint_meta)
        write_curve(curve_path, curve)
    model.eval()
    return TrainResult(steps=step, wall_time_s=elapsed(), stopped_by=stopped_by, resumed_from=resumed_from)
