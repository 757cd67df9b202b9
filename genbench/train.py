"""The training loop shared by every model: budgets, progress, curve, checkpoints, resume, NaN guard.

The loop knows nothing about a model beyond the contract: it calls `train_step(x)` and logs the
scalars it returns. Batches are a pure function of (seed, step), and the global torch RNG states (the CPU's, and
the CUDA device's on a GPU) are checkpointed, so a resumed run continues exactly where an uninterrupted one would be.

Device-clean: `train_step` may return 0-dim tensors, which stay on the device until the loop reads them, all the
steps since the last read in one transfer, at each logging step and checkpoint (so a GPU step never waits for
the host); Python floats are accepted too. A non-finite scalar stops the run at that read, naming its step, and
no checkpoint is written with non-finite scalars since the last one or with non-finite weights. Options: bf16
autocast (`amp`) and `torch.compile` of `train_step` (`compile`), which falls back to eager with the error recorded.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping
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
# The training split moves to the GPU once when it takes at most this much (and a quarter of the free memory):
# each step then gathers its batch on the device instead of copying it from the host.
DEVICE_DATA_MAX_BYTES = 2 * 2**30


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
    compile: bool = False
    compile_backend: str = "inductor"
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
    precision: str = "fp32"  # or "bf16 autocast"
    compile: dict[str, Any] | None = None  # {"backend", "active", "error"} when train.compile was asked for


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


def amp_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """bf16 when `train.amp` is on and torch has autocast for the device (CUDA, and the CPU in current torch)."""
    if not amp:
        return None
    if not torch.amp.is_autocast_available(device.type):
        raise GenbenchError(f"train.amp=true but torch has no autocast for {device.type}; use train.amp=false")
    return torch.bfloat16


def place_data(data: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The training split on `device` when it fits comfortably there (see `DEVICE_DATA_MAX_BYTES`), else as it is."""
    if device.type == "cpu" or data.device == device:
        return data
    limit = DEVICE_DATA_MAX_BYTES
    if device.type == "cuda":
        limit = min(limit, torch.cuda.mem_get_info(device)[0] // 4)
    return data.to(device) if data.element_size() * data.nelement() <= limit else data


class BatchSampler:
    """Shuffled mini-batches as a pure function of (seed, step): resuming needs no sampler state.

    The permutation is drawn on the CPU (the same batches on every device) and moved to the data's device.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int) -> None:
        self.data, self.seed = data, seed
        self.batch_size = min(batch_size, len(data))
        self.steps_per_epoch = len(data) // self.batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def batch(self, step: int) -> torch.Tensor:
        epoch, j = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(len(self.data), generator=gen)
            self._epoch, self._perm = epoch, perm.to(self.data.device)
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
    device = model.device
    if device.type == "cuda":  # on a GPU the training noise comes from the device's RNG
        state["cuda_rng_state"] = torch.cuda.get_rng_state(device)
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
    device = model.device
    if device.type == "cuda" and "cuda_rng_state" in state:
        torch.cuda.set_rng_state(state["cuda_rng_state"], device)


def nonfinite_tensors(model: GenerativeModel) -> list[str]:
    """Names of the floating-point parameters and buffers holding NaN or Inf (one device read for all of them)."""
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    named = [(n, t) for n, t in tensors if t.is_floating_point()]
    if not named:
        return []
    flags = torch.stack([~torch.isfinite(t).all() for _, t in named]).tolist()
    return [name for (name, _), bad in zip(named, flags, strict=True) if bad]


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


# ----------------------------------------------------------------------------- scalars and compilation


class PendingScalars:
    """The scalars of the steps since the last read, left where the model put them until the loop needs them."""

    def __init__(self) -> None:
        # (step, host floats, names of the device values, the device values stacked, key order)
        self._steps: list[tuple[int, dict[str, float], list[str], torch.Tensor | None, list[str]]] = []

    def add(self, step: int, scalars: Mapping[str, torch.Tensor | float]) -> bool:
        """Keep one step's scalars (tensors stacked into one, so a later in-place change cannot alter them).

        Returns:
            True when a host float among them is already non-finite (worth a read now).
        """
        host = {k: float(v) for k, v in scalars.items() if not isinstance(v, torch.Tensor)}
        names = [k for k, v in scalars.items() if isinstance(v, torch.Tensor)]
        values = torch.stack([scalars[k].detach().float().reshape(()) for k in names]) if names else None
        self._steps.append((step, host, names, values, list(scalars)))
        return not all(math.isfinite(v) for v in host.values())

    def read(self) -> list[tuple[int, dict[str, float]]]:
        """`(step, scalars)` of every pending step, as floats: one device-to-host transfer for all of them."""
        stacked = [values for _, _, _, values, _ in self._steps if values is not None]
        flat = torch.cat(stacked).tolist() if stacked else []
        rows, i = [], 0
        for step, host, names, _, order in self._steps:
            merged = {**host, **dict(zip(names, flat[i : i + len(names)], strict=True))}
            rows.append((step, {k: merged[k] for k in order}))
            i += len(names)
        self._steps = []
        return rows


def rng_states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_states(device: torch.device, states: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(states[0])
    if states[1] is not None:
        torch.cuda.set_rng_state(states[1], device)


def compiled_train_step(
    model: GenerativeModel, backend: str, batch: torch.Tensor, autocast: torch.dtype | None
) -> tuple[Callable[[torch.Tensor], Mapping[str, torch.Tensor | float]], dict[str, Any]]:
    """`torch.compile(model.train_step)`, or the eager step with the reason when compilation fails.

    Compilation errors surface at the first call, and a failed first call may already have updated some weights,
    so the first compiled step runs on a copy of the model (global RNG states restored afterwards): a failure
    leaves the real model and the run's randomness untouched, and training goes on eagerly with the error recorded.
    """
    info: dict[str, Any] = {"backend": str(backend), "active": False, "error": None}
    device, states = model.device, rng_states(model.device)
    probe = copy.deepcopy(model)
    try:
        with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            torch.compile(probe.train_step, backend=backend)(batch)
    except Exception as err:  # any compiler failure: record it and train eagerly, as train.compile promises
        info["error"] = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
        log.warning("train.compile: falling back to eager: %s", info["error"])
        return model.train_step, info
    finally:
        set_rng_states(device, states)
        del probe
    info["active"] = True
    return torch.compile(model.train_step, backend=backend), info


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
        train_data: the training split, in pipeline units, on the CPU (moved to the device once if it fits).
        cfg: budgets, batch size, checkpointing, AMP, compilation.
        run_dir: where `checkpoint.pt` and `curve.csv` live; an existing checkpoint is resumed.
        seed: the run's seed (batches are a function of it).
        checkpoint_meta: what makes the checkpoint self-describing (model target, arguments, spec, config).

    Raises:
        NonFiniteLossError: a step returned NaN/Inf, or the weights went non-finite; the last good checkpoint is
            left as it was.
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
    device = model.device
    sampler = BatchSampler(place_data(train_data, device), cfg.batch_size, seed)
    autocast = amp_dtype(cfg.amp, device)
    start, stopped_by = time.perf_counter(), "max_steps"
    last_good, pending = resumed_from, PendingScalars()
    model.train()
    train_step, compile_info = model.train_step, None
    if cfg.compile and step < cfg.max_steps:
        train_step, compile_info = compiled_train_step(model, cfg.compile_backend, sampler.batch(step), autocast)
        model.train()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - start

    def last_good_text() -> str:
        return f"step {last_good} in {ckpt_path}" if last_good is not None else "none was written yet"

    def read_checked() -> dict[str, float]:
        """The pending scalars, read once; the first non-finite one stops the run, naming its step."""
        rows = pending.read()
        for at, values in rows:
            bad = {k: v for k, v in values.items() if not math.isfinite(v)}
            if bad:
                raise NonFiniteLossError(
                    f"non-finite training scalars {bad} at step {at}; stopped. Last good checkpoint: {last_good_text()}"
                )
        return rows[-1][1] if rows else {}

    def checkpoint() -> None:
        nonlocal last_good
        read_checked()
        bad = nonfinite_tensors(model)
        if bad:
            raise NonFiniteLossError(
                f"non-finite weights ({', '.join(bad[:5])}) after step {step}; not saved. "
                f"Last good checkpoint: {last_good_text()}"
            )
        save_checkpoint(ckpt_path, model, step, elapsed(), checkpoint_meta)
        write_curve(curve_path, curve)
        last_good = step
        if cfg.keep_snapshots:
            save_snapshot(run_dir, model, step)

    with tqdm(total=cfg.max_steps, initial=step, desc=f"train {type(model).__name__}", dynamic_ncols=True) as bar:
        while step < cfg.max_steps:
            if cfg.max_minutes is not None and elapsed() > 60 * cfg.max_minutes:
                stopped_by = "max_minutes"
                break
            x = sampler.batch(step).to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                scalars = train_step(x)
            step += 1
            host_bad = pending.add(step, scalars)
            if step % cfg.log_every == 0 or step == cfg.max_steps or host_bad:
                latest = read_checked()
                curve.append({"step": float(step), **latest})
                bar.set_postfix({k: f"{v:.4g}" for k, v in latest.items()}, refresh=False)
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                checkpoint()
            bar.update(1)
    if last_good != step:  # stopped by the time budget between checkpoints
        checkpoint()
    model.eval()
    return TrainResult(
        steps=step,
        wall_time_s=elapsed(),
        stopped_by=stopped_by,
        resumed_from=resumed_from,
        precision="fp32" if autocast is None else "bf16 autocast",
        compile=compile_info,
    )
