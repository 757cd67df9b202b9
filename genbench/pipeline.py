"""The pipeline as plain functions: dataset -> model -> training -> evaluation -> run record.

`bench(cfg)` trains and evaluates one run; `evaluate_run(cfg)` re-evaluates a finished run directory;
`load_run(run_dir)` rebuilds a model and its data from a run directory. `genbench.cli` wraps them in
Hydra, tests call them directly. Nothing here branches on a model's name.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genbench import metrics
from genbench.data import Dataset, DataSpec, load_dataset
from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.model import GenerativeModel
from genbench.report import figures
from genbench.report.summary import run_summary
from genbench.results import Metric, atomic_write_text, load_record, new_record, save_record
from genbench.train import (
    CHECKPOINT_NAME,
    CURVE_NAME,
    TrainConfig,
    load_checkpoint,
    resolve_device,
    seed_everything,
    train,
)

CONFIG_NAME = "config.yaml"
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


def _identity(meta: dict[str, Any]) -> tuple:
    return meta["model_target"], json.dumps(meta["model_kwargs"], sort_keys=True), meta["spec"], meta["seed"]


def bench(cfg: DictConfig) -> dict[str, Any]:
    """Train one model on one dataset, evaluate it, write its run directory; returns the record."""
    config = OmegaConf.to_container(cfg, resolve=True)
    seed_everything(cfg.seed)
    data = build_dataset(config["dataset"])
    model = build_model(config["model"], data.spec)  # bad input fails here, before any folder exists
    train_cfg = TrainConfig(**config["train"])
    device = resolve_device(train_cfg.device)
    run_dir = Path(cfg.out_dir)
    meta = {
        "model_target": config["model"]["_target_"],
        "model_name": config["model"]["name"],
        "model_kwargs": {k: v for k, v in config["model"].items() if k not in ("_target_", "name")},
        "spec": data.spec.to_dict(),
        "seed": cfg.seed,
        "config": config,
    }
    ckpt = run_dir / CHECKPOINT_NAME
    if train_cfg.resume and ckpt.exists() and _identity(load_checkpoint(ckpt)) != _identity(meta):
        raise GenbenchError(f"{run_dir} holds a checkpoint of a different run; choose another out_dir= or delete it")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_NAME, OmegaConf.to_yaml(cfg, resolve=True))
    record = new_record(model=meta["model_name"], dataset=data.spec.name, seed=cfg.seed, config=config, device=device)
    record.update(model_info=model.describe(), data=data.spec.to_dict(), eval_preset=cfg.eval.name)
    model.to(device)
    model.configure_optimizers()
    try:
        result = train(model, data.train, train_cfg, run_dir, cfg.seed, meta)
        record["train"] = {
            "steps": result.steps,
            "wall_time_s": result.wall_time_s,
            "stopped_by": result.stopped_by,
            "resumed_from": result.resumed_from,
            "batch_size": train_cfg.batch_size,
        }
        figures.save_curve_plot(run_dir / CURVE_NAME, run_dir / CURVE_PLOT_NAME, title=meta["model_name"])
        record["metrics"] = [m.to_dict() for m in evaluate_model(model, data, cfg.eval, run_dir)]
    except Exception as err:  # any failure, ours or a library's: the record says so, then the error goes on up
        message = str(err) if isinstance(err, GenbenchError) else f"{type(err).__name__}: {err}"
        record.update(status="failed", error=message)
        save_record(record, run_dir)
        print(run_summary(record, run_dir))
        raise
    save_record(record, run_dir)
    print(run_summary(record, run_dir))
    return record


def evaluate_model(model: GenerativeModel, data: Dataset, eval_cfg: DictConfig, run_dir: Path) -> list[Metric]:
    """Sample grid plus every registered metric family (genbench.metrics.FAMILIES), on one evaluation context:
    each sampling mode's samples are drawn once and shared, each family draws its own randomness."""
    ctx = EvalContext(model, data, eval_cfg)
    n_grid = eval_cfg.grid_size if data.spec.is_image else TOY_SCATTER_POINTS
    figures.save_sample_grid(ctx.samples(n_grid), run_dir / SAMPLES_NAME, data)
    found: list[Metric] = []
    for family in metrics.FAMILIES:
        found += family.evaluate_fn()(ctx)
    return found


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
    """`genbench eval run_dir=... eval=paper`: re-evaluate a trained run without retraining."""
    if not cfg.get("run_dir"):
        raise GenbenchError("genbench eval needs run_dir=<a run directory written by genbench bench>")
    run_dir = Path(cfg.run_dir)
    model, data, _ = load_run(run_dir)
    model.to(resolve_device(cfg.train.device))
    record = load_record(run_dir)
    start = time.perf_counter()
    record["metrics"] = [m.to_dict() for m in evaluate_model(model, data, cfg.eval, run_dir)]
    record.update(eval_preset=cfg.eval.name, eval_wall_time_s=time.perf_counter() - start)
    save_record(record, run_dir)
    print(run_summary(record, run_dir))
    return record
