"""`genbench speed`: build one model or several, sweep their sampling speed, write speed records and the report.

The sweep itself (points, batch sizes, budgets) is the metric family `genbench.metrics.speed`; this module is the
command around it: it builds models from their configs or a run directory, writes `speed.json` records and calls
the speed report (`genbench.report.speed`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from genbench import CONF_DIR
from genbench.data import DataSpec
from genbench.errors import GenbenchError
from genbench.metrics.speed import point_metrics, sweep
from genbench.metrics.speed_timing import cpu_model, device_slug, environment, shape_label
from genbench.model import GenerativeModel
from genbench.pipeline import build_dataset, build_model, load_run
from genbench.report.speed import SPEED_RECORD, speed_report
from genbench.results import atomic_write_text, device_name, git_commit
from genbench.train import resolve_device

log = logging.getLogger(__name__)
SPEED_SCHEMA_VERSION = 1


def speed_record(
    model: GenerativeModel,
    model_name: str,
    spec: DataSpec,
    weights: str,
    sc: DictConfig,
    points: list[dict[str, Any]],
) -> dict[str, Any]:
    """The speed record: where and how it was measured, one entry per point, and the record-style metrics."""
    env = {**environment(model.device), "cpu_model": cpu_model()}
    head = {"model": model_name, "dataset": spec.name, "shape": shape_label(spec.shape), "weights": weights}
    points = [{**head, **env, **p} for p in points]
    return {
        "kind": "speed",
        "schema_version": SPEED_SCHEMA_VERSION,
        "status": "ok",
        **head,
        **env,
        "git_commit": git_commit(),
        "model_info": model.describe(),
        "protocol": OmegaConf.to_container(sc, resolve=True),
        "points": points,
        "metrics": [m.to_dict() for p in points if p["status"] == "ok" for m in point_metrics(p)],
    }


def write_record(record: dict[str, Any], folder: Path) -> Path:
    path = folder / SPEED_RECORD
    atomic_write_text(path, json.dumps(_finite(record), indent=2) + "\n")
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # NaN and Inf are not JSON: null, never a fake number
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def model_config(name: str) -> dict[str, Any]:
    """`conf/model/<name>.yaml` as a dict, for the several models of `speed.models`."""
    folder = CONF_DIR / "model"
    path = folder / f"{name}.yaml"
    if not path.exists():
        accepted = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise GenbenchError(f"unknown model {name!r} in speed.models; accepted: {accepted}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def measure_model(
    model: GenerativeModel, model_name: str, spec: DataSpec, weights: str, sc: DictConfig, device: torch.device
) -> dict[str, Any]:
    """Move a model to `device`, sweep it, and return its speed record."""
    model.to(device).eval()
    # A generator on the timing device: drawing the noise there is part of sampling, no host-to-device copy.
    generator = torch.Generator(device=device).manual_seed(0)
    log.info("speed: %s (%s weights) on %s", model_name, weights, device_name(device))
    return speed_record(model, model_name, spec, weights, sc, sweep(model, sc, generator))


def run_speed(cfg: DictConfig) -> list[dict[str, Any]]:
    """`genbench speed`: sweep one model (`model=...` or `run_dir=...`) or several (`speed.models=[...]`).

    One model writes `<out_dir>/speed.json`; several write `<folder>/<model>/speed.json` with `folder` =
    `speed.out_dir`, or `results/speed/<device>/<dataset>` when unset. Then the folder gets its speed report.

    Returns:
        The speed records written.
    """
    sc = cfg.speed
    device = resolve_device(cfg.train.device)
    if sc.get("threads"):
        torch.set_num_threads(int(sc.threads))
    names = list(sc.get("models") or [])
    if cfg.get("run_dir"):
        if names:
            raise GenbenchError("run_dir= measures one trained run; leave speed.models empty with it")
        model, data, run_cfg = load_run(cfg.run_dir)
        record = measure_model(model, run_cfg.model.name, data.spec, "trained", sc, device)
        return _finish([(record, Path(cfg.out_dir))], Path(cfg.out_dir), sc.reference)
    data = build_dataset(OmegaConf.to_container(cfg.dataset, resolve=True))
    if not names:
        torch.manual_seed(cfg.seed)
        model = build_model(OmegaConf.to_container(cfg.model, resolve=True), data.spec)
        record = measure_model(model, cfg.model.name, data.spec, "random", sc, device)
        return _finish([(record, Path(cfg.out_dir))], Path(cfg.out_dir), sc.reference)
    folder = Path(sc.out_dir) if sc.get("out_dir") else Path("results/speed") / device_slug(device) / data.spec.name
    configs = {name: model_config(name) for name in names}  # a misspelt name fails before any timing
    done = []
    for name, model_cfg in configs.items():
        torch.manual_seed(cfg.seed)
        try:
            model = build_model(model_cfg, data.spec)
        except GenbenchError as err:  # e.g. a model that refuses this data's shape: say so, measure the others
            log.warning("speed: %s not measured: %s", name, err)
            record = {"kind": "speed", "status": "skipped", "model": name, "dataset": data.spec.name, "error": str(err)}
            done.append(({**record, "points": [], "metrics": []}, folder / name))
        else:
            done.append((measure_model(model, name, data.spec, "random", sc, device), folder / name))
        write_record(*done[-1])  # each record lands as soon as it is measured: a later failure loses nothing
    return _finish(done, folder, sc.reference)


def _finish(done: list[tuple[dict[str, Any], Path]], folder: Path, reference: str | None) -> list[dict[str, Any]]:
    for record, where in done:
        log.info("speed: wrote %s", write_record(record, where))
    for path in speed_report(folder, reference=reference).values():
        log.info("speed: wrote %s", path)
    return [record for record, _ in done]
