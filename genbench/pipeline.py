"""The pipeline as plain functions: dataset -> model -> training -> evaluation -> run record.

`bench(cfg)` trains and evaluates one run; `evaluate_run(cfg)` re-evaluates a finished run directory;
`load_run(run_dir)` rebuilds a model and its data from a run directory. `genbench.cli` wraps them in
Hydra, tests call them directly. Nothing here branches on a model's name.

A bench job that fails, at whatever stage, leaves a failed record (genbench/job.py), then the error goes on up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genbench import metrics
from genbench.config_schema import validate_config
from genbench.data import Dataset, DataSpec
from genbench.datasets import load_dataset
from genbench.errors import GenbenchError
from genbench.job import CONFIG_NAME, Job, counting_steps
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel
from genbench.report import figures
from genbench.report.summary import run_summary
from genbench.results import (
    RECORD_NAME,
    Metric,
    atomic_write_text,
    device_name,
    ensure_writable_dir,
    load_record,
    mark_failed,
    mark_ok,
    save_record,
)
from genbench.train import (
    CHECKPOINT_NAME,
    CURVE_NAME,
    TrainConfig,
    load_checkpoint,
    resolve_device,
    seed_everything,
    train,
)

SAMPLES_NAME = "samples.png"
CURVE_PLOT_NAME = "curve.png"
TOY_SCATTER_POINTS = 1000


def build_model(model_cfg: dict[str, Any], spec: DataSpec) -> GenerativeModel:
    """Instantiate `_target_` with the DataSpec and the yaml's plain arguments (`name` is ours, not the model's)."""
    target, name = model_cfg["_target_"], model_cfg.get("name", "?")
    kwargs = {k: v for k, v in model_cfg.items() if k not in ("_target_", "name")}
    try:
        cls = hydra.utils.get_class(target)
        return cls(spec=spec, **kwargs)
    except (TypeError, ValueError, ImportError) as err:
        raise GenbenchError(f"cannot build model {name!r} ({target}) for data of shape {spec.shape}: {err}") from err


def build_dataset(dataset_cfg: dict[str, Any]) -> Dataset:
    kwargs = {k: v for k, v in dataset_cfg.items() if k != "_target_"}
    return load_dataset(**kwargs)


IDENTITY_KEYS = ("model_target", "model_kwargs", "spec", "seed")


def _identity(meta: dict[str, Any]) -> tuple:
    return meta["model_target"], json.dumps(meta["model_kwargs"], sort_keys=True), meta["spec"], meta["seed"]


def bench(cfg: DictConfig) -> dict[str, Any]:
    """Train one model on one dataset, evaluate it, write its run directory; returns the record.

    Raises:
        Exception: whatever stopped the job, after its failed record is written (module docstring).
    """
    job = Job(cfg)
    try:
        return _bench_stages(job)
    except Exception as err:
        job.save_failure(err)
        raise


def _bench_stages(job: Job) -> dict[str, Any]:
    cfg, record, run_dir = job.cfg, job.record, job.run_dir
    train_cfg = validate_config(cfg)  # stage "config": every check that needs no data, before any work
    config = OmegaConf.to_container(cfg, resolve=True)
    device = resolve_device(train_cfg.device)
    record["device"] = device_name(device)
    ensure_writable_dir(run_dir, "out_dir")
    seed_everything(cfg.seed)
    job.stage = "data"
    data = build_dataset(config["dataset"])
    record.update(dataset=data.spec.name, data=data.spec.to_dict())
    job.stage = "model"
    model = build_model(config["model"], data.spec)
    record.update(model_info=model.describe())
    job.stage = "checkpoint"
    meta = {
        "model_target": config["model"]["_target_"],
        "model_name": config["model"]["name"],
        "model_kwargs": {k: v for k, v in config["model"].items() if k not in ("_target_", "name")},
        "spec": data.spec.to_dict(),
        "seed": cfg.seed,
        "config": config,
    }
    job.start_step = _check_checkpoint(run_dir, train_cfg, meta)
    job.stage, job.touched = "training", True
    atomic_write_text(run_dir / CONFIG_NAME, OmegaConf.to_yaml(cfg, resolve=True))
    model.to(device)
    model.configure_optimizers()
    job.train_started = time.perf_counter()
    with counting_steps(model, job):
        result = train(model, data.train, train_cfg, run_dir, cfg.seed, meta)
    job.train_started = None
    record["train"] = {
        "steps": result.steps,
        "wall_time_s": result.wall_time_s,
        "stopped_by": result.stopped_by,
        "resumed_from": result.resumed_from,
        "batch_size": train_cfg.batch_size,
        "precision": result.precision,
        "compile": result.compile,
    }
    job.stage = "evaluation"
    figures.save_curve_plot(run_dir / CURVE_NAME, run_dir / CURVE_PLOT_NAME, title=meta["model_name"])
    record["metrics"] = [m.to_dict() for m in evaluate_model(model, data, cfg.eval, run_dir)]
    save_record(record, run_dir)
    print(run_summary(record, run_dir))
    return record


def _check_checkpoint(run_dir: Path, train_cfg: TrainConfig, meta: dict[str, Any]) -> int:
    """The step a resumed run starts from (0 for a fresh one); refuse a checkpoint of another run or budget."""
    ckpt = run_dir / CHECKPOINT_NAME
    if not (train_cfg.resume and ckpt.exists()):
        return 0
    state = load_checkpoint(ckpt)
    lacking = [k for k in IDENTITY_KEYS if k not in state]
    if lacking:
        raise GenbenchError(f"{ckpt} does not say which run it belongs to (lacks {', '.join(lacking)}); delete it")
    if _identity(state) != _identity(meta):
        raise GenbenchError(f"{run_dir} holds a checkpoint of a different run; choose another out_dir= or delete it")
    if state["step"] > train_cfg.max_steps:
        # Resuming cannot undo steps: the record would say one budget and config.yaml another.
        raise GenbenchError(
            f"train.max_steps={train_cfg.max_steps} is below the {state['step']} steps already trained in {ckpt}; "
            f"ask for max_steps >= {state['step']}, or choose another out_dir="
        )
    return state["step"]


def evaluate_model(model: GenerativeModel, data: Dataset, eval_cfg: DictConfig, run_dir: Path) -> list[Metric]:
    """Sample grid plus every registered metric family (genbench.metrics.FAMILIES), on one evaluation context:
    each sampling mode's samples are drawn once and shared, each family draws its own randomness."""
    ctx = EvalContext(model, data, eval_cfg, run_dir)
    chosen = selected_families(eval_cfg)
    if chosen is None:  # a whole evaluation draws the run's sample grid; a partial one leaves it as it was
        n_grid = eval_cfg.grid_size if data.spec.is_image else TOY_SCATTER_POINTS
        figures.save_sample_grid(ctx.samples(n_grid), run_dir / SAMPLES_NAME, data)
    found: list[Metric] = []
    for family in metrics.FAMILIES:
        if chosen is None or family.section in chosen:
            for metric in family.evaluate_fn()(ctx):
                metric.extra["family"] = family.section  # which family wrote it: a partial re-evaluation replaces it
                found.append(metric)
    return found


def selected_families(eval_cfg: DictConfig) -> list[str] | None:
    """`eval.families`: the families to run (None: all), each a registered section."""
    chosen = eval_cfg.get("families")
    if chosen is None:
        return None
    known = [f.section for f in metrics.FAMILIES]
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise GenbenchError(f"eval.families={list(chosen)}: unknown {unknown}; accepted: {', '.join(known)}")
    return list(chosen)


def load_run(run_dir: Path | str) -> tuple[GenerativeModel, Dataset, DictConfig]:
    """Rebuild a run's model (with its trained weights, on the CPU) and data from its directory alone."""
    run_dir = Path(run_dir)
    ckpt, config_path = run_dir / CHECKPOINT_NAME, run_dir / CONFIG_NAME
    if not ckpt.exists() or not config_path.exists():
        raise GenbenchError(f"{run_dir} is not a finished run directory: needs {CHECKPOINT_NAME} and {CONFIG_NAME}")
    state = load_checkpoint(ckpt)
    cfg = OmegaConf.load(config_path)
    data = build_dataset(OmegaConf.to_container(cfg.dataset, resolve=True))
    if data.spec.to_dict() != state["spec"]:
        raise GenbenchError(f"the data found now differs from the data {run_dir} was trained on: {state['spec']}")
    model = build_model(
        {"_target_": state["model_target"], "name": state["model_name"], **state["model_kwargs"]},
        DataSpec.from_dict(state["spec"]),
    )
    model.load_state_dict(state["model_state"])
    model.eval()
    return model, data, cfg


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    """`genbench eval run_dir=... eval=paper`: re-evaluate a trained run without retraining.

    A run that failed before its evaluation is refused (its checkpoint is not the trained model the record
    promises). A run that failed during evaluation is evaluated again, and its record marked `ok` when that
    succeeds; an evaluation that fails marks the record failed at `evaluation` with no metrics. A failure
    before the evaluation starts (missing data, a corrupt checkpoint) leaves the record as it was.
    """
    if not cfg.get("run_dir"):
        raise GenbenchError("genbench eval needs run_dir=<a run directory written by genbench bench>")
    train_cfg = validate_config(cfg, check_model=False)  # the model comes from the checkpoint, not from cfg
    run_dir = Path(cfg.run_dir)
    if not (run_dir / RECORD_NAME).exists():
        raise GenbenchError(
            f"{run_dir} is not a finished run directory: needs {RECORD_NAME}, written by genbench bench"
        )
    record = load_record(run_dir)
    if record["status"] == "failed" and record.get("stage") != "evaluation":
        raise GenbenchError(
            f"{run_dir} holds a run that failed at {record.get('stage', 'an unrecorded stage')} "
            f"({record.get('error', 'no error recorded')}); genbench bench resumes it, genbench eval does not"
        )
    model, data, _ = load_run(run_dir)
    model.to(resolve_device(train_cfg.device))
    start = time.perf_counter()
    chosen = selected_families(cfg.eval)
    kept = [] if chosen is None else [m for m in record["metrics"] if m.get("family") not in chosen]
    try:
        record["metrics"] = kept + [m.to_dict() for m in evaluate_model(model, data, cfg.eval, run_dir)]
    except Exception as err:
        mark_failed(record, "evaluation", err)
        record.update(metrics=[], eval_preset=cfg.eval.name)
        save_record(record, run_dir)
        raise
    mark_ok(record)
    record.update(eval_preset=cfg.eval.name, eval_wall_time_s=time.perf_counter() - start)
    save_record(record, run_dir)
    print(run_summary(record, run_dir))
    return record
