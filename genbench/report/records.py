"""The report's input: run records loaded, validated, grouped by dataset and model, and their metrics by variant.

The bottom of the report package: it imports nothing of the report's own. Models are ordered and told apart by
what their records say they are (`model_info`, from `GenerativeModel.describe()`), never by their names.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from genbench.errors import GenbenchError
from genbench.results import RECORD_NAME, load_record

# The order the seed discusses the families in; a family not listed goes last, then by model name.
FAMILY_ORDER = ("adversarial", "variational", "autoregressive", "flow", "boltzmann", "markov_chain", "diffusion")
CONFIG_NAME = "config.yaml"  # the resolved config of the run, written by the pipeline
# Training settings that make two runs of one model different experiments (device, resume, logging do not).
SETTING_TRAIN_KEYS = ("batch_size", "max_steps", "keep_snapshots")
SPEED_RECORD = "speed.json"  # written by genbench speed, one per model and device
CURVE_NAME = "curve.csv"  # written by genbench.train: a `step` column, then the model's scalars (loss first)
NOT_RUN, FAILED, NO_LIKELIHOOD = "not run", "failed", "n/a: no likelihood"

VariantKey = tuple[str, str]  # (metric name, its variant as sorted JSON)


@dataclass
class Run:
    """One run directory and its validated record."""

    path: Path
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"

    @property
    def seed(self) -> int:
        return self.record["seed"]

    @property
    def preset(self) -> str | None:
        """The eval preset its metrics were computed with (`eval=fast|default|paper`)."""
        return self.record.get("eval_preset")

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The run's dataset, model and training settings, flat (`model.width`, `dataset.mixture`, ...), read from
        its `config.yaml`: what tells apart runs of one model that are not mere seeds of one another."""
        path = self.path / CONFIG_NAME
        if not path.exists():
            return {}
        try:
            config = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
        except (OSError, ValueError, yaml.YAMLError):  # an unreadable config: the run stands alone by its record
            return {}
        flat = {}
        for section in ("dataset", "model"):
            for key, value in (config.get(section) or {}).items():
                if key not in ("_target_", "name"):
                    flat[f"{section}.{key}"] = value
        for key in SETTING_TRAIN_KEYS:
            if key in (config.get("train") or {}):
                flat[f"train.{key}"] = config["train"][key]
        return flat


@dataclass
class BadRecord:
    """A record the report could not use: where, and why (one line)."""

    path: Path
    reason: str


@dataclass
class Group:
    """All runs (seeds) of one model on one dataset with one set of settings.

    `settings` holds what tells this group apart from other groups of the same model (a width, a loss, a
    latent size in a sweep); `label` is the model's name with them, as tables and figures show it.
    """

    dataset: str
    model: str
    runs: list[Run]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in self.settings.items() if v is not None)
        return f"{self.model} ({shown})" if shown else self.model

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def all_failed(self) -> bool:
        return not self.ok_runs

    @property
    def info(self) -> dict[str, Any]:
        """`model_info` of the first run that has it (the same for every seed)."""
        return next((r.record["model_info"] for r in self.runs if r.record.get("model_info")), {})

    @property
    def family(self) -> str:
        return self.info.get("family") or "other"

    @property
    def default_mode(self) -> str | None:
        """The sampling mode whose samples the main table scores (the first of the model's modes)."""
        modes = self.info.get("sampling_modes") or []
        return self.info.get("default_mode") or (modes[0] if modes else None)

    @property
    def presets(self) -> set[str]:
        return {r.preset for r in self.ok_runs if r.preset}


@dataclass
class Runs:
    """Every usable record under a folder, and the ones that were not."""

    root: Path
    runs: list[Run]
    bad: list[BadRecord] = field(default_factory=list)


def load_runs(root: Path | str) -> Runs:
    """Every record under `root`, validated, in path order; unreadable or invalid ones are set aside with why."""
    root = Path(root)
    paths = sorted(root.rglob(RECORD_NAME))
    if not paths:
        raise GenbenchError(f"no {RECORD_NAME} under {root}; run `genbench bench` (or `-m` for a sweep) first")
    runs, bad = [], []
    for path in paths:
        try:
            run = Run(path.parent, load_record(path))
            check_variants(run)
        except GenbenchError as err:
            bad.append(BadRecord(path, str(err)))
            continue
        runs.append(run)
    if not runs:
        raise GenbenchError(f"no usable {RECORD_NAME} under {root}: " + "; ".join(b.reason for b in bad))
    return Runs(root, runs, bad)


def variant_key(metric: dict[str, Any]) -> VariantKey:
    return metric["name"], json.dumps(metric.get("variant") or {}, sort_keys=True)


def check_variants(run: Run) -> None:
    """Refuse a record in which two metrics share a name and a variant: averaging them would mix measurements."""
    counts = Counter(variant_key(m) for m in run.record["metrics"])
    for (name, variant), count in counts.items():
        if count > 1:
            raise GenbenchError(
                f"{run.path / RECORD_NAME}: {count} '{name}' metrics share the variant {variant}; the field that "
                f"tells them apart must be named in Metric.variant"
            )


def family_rank(group: Group) -> tuple[int, str]:
    order = FAMILY_ORDER.index(group.family) if group.family in FAMILY_ORDER else len(FAMILY_ORDER)
    return order, group.model


def varying(runs: list[Run], prefixes: tuple[str, ...]) -> list[str]:
    """Setting keys (under `prefixes`) whose values are not the same in every run."""
    keys = sorted({k for r in runs for k in r.settings if k.startswith(prefixes)})
    return [k for k in keys if len({json.dumps(r.settings.get(k), sort_keys=True) for r in runs}) > 1]


def split_by(runs: list[Run], keys: list[str]) -> dict[str, tuple[dict[str, Any], list[Run]]]:
    """Runs split by their values of `keys`: {sorted JSON of the values: (the values, runs)}."""
    out: dict[str, tuple[dict[str, Any], list[Run]]] = {}
    for run in runs:
        values = {k: run.settings.get(k) for k in keys}
        out.setdefault(json.dumps(values, sort_keys=True, default=str), (values, []))[1].append(run)
    return out


def group_runs(runs: Iterable[Run]) -> dict[str, list[Group]]:
    """Runs grouped by dataset, then model, then the settings that differ between runs of it (a sweep's width,
    loss or latent size; a dataset's mixture): seeds of one configuration share a group, nothing else does.

    A dataset whose runs differ in a dataset setting gets one table per value, named e.g. `toy2d (mixture=grid25)`.
    Groups come in family order, runs in seed order.
    """
    by_dataset: dict[str, list[Run]] = {}
    for run in runs:
        by_dataset.setdefault(run.record["dataset"], []).append(run)
    out: dict[str, list[Group]] = {}
    for dataset, members in sorted(by_dataset.items()):
        data_keys = varying(members, ("dataset.",))
        for values, data_runs in split_by(members, data_keys).values():
            shown = ", ".join(f"{k.removeprefix('dataset.')}={v}" for k, v in values.items() if v is not None)
            label = dataset + (f" ({shown})" if shown else "")
            groups = out.setdefault(label, [])
            by_model: dict[str, list[Run]] = {}
            for run in data_runs:
                by_model.setdefault(run.record["model"], []).append(run)
            for model, model_runs in sorted(by_model.items()):
                keys = varying(model_runs, ("model.", "train."))
                for settings, same in split_by(model_runs, keys).values():
                    same.sort(key=lambda r: (r.seed, str(r.path)))
                    groups.append(Group(dataset, model, same, settings))
    return {d: sorted(groups, key=lambda g: (*family_rank(g), g.label)) for d, groups in out.items()}


def variants(group: Group, name: str) -> dict[str, list[dict[str, Any]]]:
    """Metrics called `name` in the group's finished runs, by variant (sorted JSON); each dict gains `seed`."""
    out: dict[str, list[dict[str, Any]]] = {}
    for run in group.ok_runs:
        for m in run.record["metrics"]:
            if m["name"] == name and m["value"] is not None:
                out.setdefault(variant_key(m)[1], []).append({**m, "seed": run.seed})
    return out


def candidates(group: Group, name: str, **fields: Any) -> list[list[dict[str, Any]]]:
    """The variants of `name` whose variant fields agree with `fields` (a field a variant lacks does not count,
    except `source`: a metric that names none is the model's, never a real-data floor)."""
    return [ms for ms in variants(group, name).values() if all(agrees(ms[0], k, v) for k, v in fields.items())]


def agrees(metric: dict[str, Any], field: str, value: Any) -> bool:
    variant = metric.get("variant", {})
    if field == "source":
        return variant.get("source", metric.get("source", "model")) == value
    return variant.get(field, value) == value


def reason(group: Group) -> str:
    return FAILED if group.all_failed else NOT_RUN


def scalar_curves(run: Run) -> dict[str, tuple[list[float], list[float]]]:
    """Every logged training scalar of the run's `curve.csv` as {name: (steps, values)}, in column order."""
    path = run.path / CURVE_NAME
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        names = [c for c in reader.fieldnames or [] if c != "step"]
    out = {}
    for name in names:
        logged = [r for r in rows if r.get(name) not in (None, "")]  # a scalar a step did not log is left out
        if logged:
            out[name] = ([float(r["step"]) for r in logged], [float(r[name]) for r in logged])
    return out


def loss_curve(run: Run) -> tuple[str, list[float], list[float]] | None:
    """(loss name, steps, losses) from the run's `curve.csv`: the first scalar after `step` is the loss."""
    curves = scalar_curves(run)
    if not curves:
        return None
    name = next(iter(curves))
    return name, *curves[name]


def data_dim(group: Group) -> int | None:
    """Number of dimensions of one example, from the record's `data` (DataSpec) field."""
    shape = next((r.record["data"].get("shape") for r in group.runs if r.record.get("data")), None)
    if not shape:
        return None
    dim = 1
    for s in shape:
        dim *= int(s)
    return dim


def load_speed_records(folder: Path | str) -> list[dict[str, Any]]:
    """Every speed record under `folder` (recursively), in path order."""
    records = []
    for path in sorted(Path(folder).rglob(SPEED_RECORD)):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise GenbenchError(f"cannot read speed record {path}: {err}") from err
    return records
