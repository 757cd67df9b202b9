"""Table cells: a mean ± sample std over seeds with its kind mark and a note, or a reason why there is no number."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

KIND_MARK = {"exact": "=", "lower_bound": "≤", "estimate": "≈", "measured": ""}


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1); no std from a single value."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def fmt(x: float, digits: int = 4) -> str:
    """`x` rounded to `digits` significant digits; plain notation from 0.0001 to a million, else an exponent."""
    if x == 0:
        return f"{0:.{digits - 1}f}"
    if not 1e-4 <= abs(x) < 1e6:
        return f"{x:.{digits - 1}e}"
    x = round(x, digits - 1 - math.floor(math.log10(abs(x))))
    decimals = digits - 1 - math.floor(math.log10(abs(x)))  # again: rounding may carry (999.96 -> 1000)
    return f"{x:.{max(decimals, 0)}f}"


def mean_text(values: list[float]) -> str:
    mean, std = mean_std(values)
    return fmt(mean) + (f" ± {fmt(std, 2)}" if std is not None else " (1 seed)")


@dataclass
class Cell:
    """A table cell: a mean ± std over `n` seeds with a kind mark and a note, or only a reason (`note`)."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    mark: str = ""
    note: str = ""
    kind: str = ""
    key: str = ""  # the metric variant the cell summarises (sorted JSON)
    metrics: tuple[dict[str, Any], ...] = ()  # the per-seed metrics behind the number

    @classmethod
    def of(cls, metrics: list[dict[str, Any]], **kw: Any) -> Cell:
        mean, std = mean_std([m["value"] for m in metrics])
        return cls(mean, std, len(metrics), metrics=tuple(metrics), **kw)

    def text(self) -> str:
        if self.mean is None:
            return self.note
        body = fmt(self.mean) + (f" ± {fmt(self.std, 2)}" if self.std is not None else "")
        return " ".join(p for p in (self.mark, body, f"({self.note})" if self.note else "") if p)

    def first(self, field: str) -> Any:
        """A field of the metrics behind the cell, if they all agree on it (None otherwise)."""
        values = {repr(m.get(field)) for m in self.metrics}
        return self.metrics[0].get(field) if len(values) == 1 and self.metrics else None
