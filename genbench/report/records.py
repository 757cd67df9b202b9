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
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.results import RECORD_NAME, load_record

# The order the seed discusses the families in; a family not listed goes last, then by model name.
FAMILY_ORDER = ("adversarial", "variational", "autoregressive", "flow", "boltzmann", "markov_chain", "diffusion")
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


@dataclass
class BadRecord:
    """A record the report could not use: where, and why (one line)."""

    path: Path
    reason: str


@dataclass
class Group:
    """All runs (seeds) of one model on one dataset."""

    dataset: str
    model: str
    runs: list[Run]

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


def group_runs(runs: Iterable[Run]) -> dict[str, list[Group]]:
    """Runs grouped by dataset, then model (family order, seed order inside a group)."""
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((run.record["dataset"], run.record["model"]), []).append(run)
    out: dict[str, list[Group]] = {}
    for (dataset, model), members in sorted(by_key.items()):
        members.sort(key=lambda r: (r.seed, str(r.path)))
        out.setdefault(dataset, []).append(Group(dataset, model, members))
    return {d: sorted(groups, key=family_rank) for d, groups in out.items()}


def variants(group: Group, name: str) -> dict[str, list[dict[str, Any]]]:
    """Metrics called `name` in the group's finished runs, by variant (sorted JSON); each dict gains `seed`."""
    out: dict[str, list[dict[str, Any]]] = {}
    for run in group.ok_runs:
        for m in run.record["metrics"]:
            if m["name"] == name and m["value"] is not None:
                out.setdefault(variant_key(m)[1], []).append({**m, "seed": run.seed})
    return out


def candidates(group: Group, name: str, **fields: Any) -> list[list[dict[str, Any]]]:
    """The variants of `name` whose variant fields agree with `fields` (a field a variant lacks does not count)."""
    return [
        ms
        for ms in variants(group, name).values()
        if all(ms[0].get("variant", {}).get(k, v) == v for k, v in fields.items())
    ]


def reason(group: Group) -> str:
    return FAILED if group.all_failed else NOT_RUN


def loss_curve(run: Run) -> tuple[str, list[float], list[float]] | None:
    """(loss name, steps, losses) from the run's `curve.csv`: the first scalar after `step` is the loss."""
    path = run.path / CURVE_NAME
    if not path.exists():
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        names = [c for c in reader.fieldnames or [] if c != "step"]
    if not rows or not names:
        return None
    return names[0], [float(r["step"]) for r in rows], [float(r[names[0]]) for r in rows]


def data_dim(group: Group) -> int | None:
    """Number of dimensions of one example, from the record's `data` (DataSpec) field."""
    shape = next((r.record["data"].get("shape") for r in group.runs if r.record.get("data")), None)
    if not shape:
        return None
    dim = 1
    for s in shape:
        dim *= int(s)
    return dim
