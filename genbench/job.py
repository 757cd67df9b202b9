"""One bench job on its way through the stages, and the failed record it leaves if it stops.

A job that fails, at whatever stage (`results.FAILURE_STAGES`: config, data, model, checkpoint, training,
evaluation), leaves a record with `status: failed`, the `stage` and the `error`, beside the config.yaml it was
given. One exception: a failure before training, which changed nothing in the run directory, leaves a finished
(`ok`) record there as it was, since that record still describes the directory; the error says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from genbench.errors import GenbenchError
from genbench.model import GenerativeModel
from genbench.results import RECORD_NAME, atomic_write_text, error_message, mark_failed, new_record, save_record
from genbench.train import CHECKPOINT_NAME, load_checkpoint

CONFIG_NAME = "config.yaml"


@dataclass
class Job:
    """One bench job's record as it goes through the stages, so a failure can say where it stopped."""

    cfg: DictConfig
    record: dict[str, Any] = field(init=False)
    stage: str = "config"
    touched: bool = False  # whether the job has changed its run directory (config.yaml, checkpoint, ...)
    start_step: int = 0
    trained_steps: int = 0
    train_started: float | None = None

    def __post_init__(self) -> None:
        try:
            config = OmegaConf.to_container(self.cfg, resolve=True)
        except Exception:  # an interpolation that does not resolve is itself the config error to record
            config = OmegaConf.to_container(self.cfg, resolve=False)

        def select(key: str, default: Any) -> Any:
            return OmegaConf.select(self.cfg, key, default=default, throw_on_resolution_failure=False)

        self.record = new_record(
            model=select("model.name", "?"),
            dataset=select("dataset.name", "?"),
            seed=select("seed", None),
            config=config,
            device="cpu",  # replaced by the resolved device's name once the config stage has checked it
        )
        self.record["device"] = f"not resolved: train.device={select('train.device', '?')}"
        self.record["eval_preset"] = select("eval.name", None)

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    def save_failure(self, err: BaseException) -> None:
        """Write the failed record (and the config.yaml it was given), or say why that was not possible."""
        mark_failed(self.record, self.stage, err)
        if self.train_started is not None:
            self.record["train"].update(
                steps=self.start_step + self.trained_steps,
                wall_time_s=time.perf_counter() - self.train_started,
                stopped_by="error",
                checkpoint_step=_checkpoint_step(self.run_dir / CHECKPOINT_NAME),
            )
        try:
            previous = self.run_dir / RECORD_NAME
            if not self.touched and previous.exists() and _status(previous) == "ok":
                err.add_note(f"{previous} (a finished run, left as it was) does not record this failure")
                return
            if not self.touched:
                atomic_write_text(self.run_dir / CONFIG_NAME, _config_yaml(self.cfg))
            save_record(self.record, self.run_dir)
        except Exception as write_err:  # a full disk, an unwritable out_dir: the first error is the news
            err.add_note(f"no failed record was written ({error_message(write_err)})")


def _status(record_path: Path) -> str | None:
    try:
        return json.loads(record_path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _checkpoint_step(path: Path) -> int | None:
    try:
        return load_checkpoint(path)["step"] if path.exists() else None
    except GenbenchError:
        return None


def _config_yaml(cfg: DictConfig) -> str:
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # unresolvable interpolations: written as given
        return OmegaConf.to_yaml(cfg)


@contextmanager
def counting_steps(model: GenerativeModel, job: Job) -> Iterator[None]:
    """Count the model's completed `train_step` calls, so that a failed record says where training stopped."""
    train_step = model.train_step

    def counted(x: torch.Tensor) -> dict[str, float]:
        scalars = train_step(x)
        job.trained_steps += 1
        return scalars

    model.train_step = counted  # an instance attribute shadowing the method, for this training only
    try:
        yield
    finally:
        del model.train_step
