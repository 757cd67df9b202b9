"""Metric families, one file each, and the one list that registers them.

A family is a module of `genbench/metrics/` with `evaluate(ctx: EvalContext) -> list[Metric]`; it reads its own
section of the eval config (`ctx.cfg.<section>`) and takes samples, features and generators from the context
(`genbench.metrics.context`), so no family draws what another has drawn. Registering a family is one entry in
`FAMILIES`: the pipeline runs the families in this order, and the report shows each family's `columns` in its
main table. Every metric names the fields that tell its variants apart (`Metric.variant`), so the report never
averages two different measurements into one cell.

Adding a metric family (README, "Adding a metric"): write `genbench/metrics/<name>.py` with `evaluate(ctx)`, add
its section to `conf/eval/default.yaml`, and one `Family(...)` line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

# How the report summarises a column's metric for one model (genbench/report/tables.py):
#   likelihood: the tightest honest bits/dim on the dataset's own discrete data (exact, else lowest bound, else
#               an estimate), its kind marked;
#   quality:    the value of the model's default sampling mode on the table's feature set;
#   throughput: samples/s of the default sampling mode at the largest batch measured, fp32;
#   plain:      the metric's only variant.
CellKind = Literal["likelihood", "quality", "throughput", "plain"]


@dataclass(frozen=True)
class Column:
    """A column of the report's main table: the metric `metric`, summarised as `cell` says."""

    metric: str
    title: str
    cell: CellKind = "plain"
    unit: str = ""  # appended to the header where the number's scale is not obvious (KID's MMD²)
    note_fields: tuple[str, ...] = ()  # fields shown in the cell, where a reader needs them (KID's subset size)


@dataclass(frozen=True)
class Family:
    """A registered metric family: its eval config section, its module, and its main-table columns."""

    section: str
    module: str
    columns: tuple[Column, ...] = ()

    def evaluate_fn(self) -> Callable[[Any], list[Any]]:
        """The family's `evaluate(ctx) -> list[Metric]`, imported on first use."""
        return importlib.import_module(self.module).evaluate


FAMILIES: tuple[Family, ...] = (
    Family(
        "likelihood",
        "genbench.metrics.likelihood",
        (Column("nll_bpd", "bits/dim", "likelihood"), Column("kl_to_truth", "KL to truth", "plain", unit="nats")),
    ),
    Family("baselines", "genbench.metrics.baselines"),  # rows of their own beside the models' likelihoods
    Family(
        "fid",
        "genbench.metrics.fid",
        (
            Column("fid", "FID", "quality", note_fields=("interval",)),  # a bootstrap interval, one seed or data
            Column("kid", "KID", "quality", unit="unbiased MMD²", note_fields=("subset_size",)),
            Column("precision", "precision", "quality"),
            Column("recall", "recall", "quality"),
        ),
    ),
    Family(  # toy mixtures: modes covered, high-quality fraction
        "mixture",
        "genbench.metrics.mixture",
        (Column("modes_covered", "modes", "quality"), Column("high_quality_fraction", "high quality", "quality")),
    ),
    Family("progress", "genbench.metrics.progress"),  # quality over training, from kept snapshots
    Family("mixing", "genbench.metrics.mixing"),  # chain samplers: classes one chain visits in N steps
    Family("partition", "genbench.metrics.partition"),  # energy models: AIS log Z against schedule length
    Family("speed", "genbench.metrics.speed", (Column("sample_throughput", "samples/s", "throughput"),)),
)


def main_columns() -> list[Column]:
    """Every registered column, in family order."""
    return [column for family in FAMILIES for column in family.columns]
