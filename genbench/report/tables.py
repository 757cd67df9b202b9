"""The comparison tables of one dataset (Markdown, LaTeX, CSV): main table, likelihood details, sampling modes.

The main table's columns are the ones the metric families register (`genbench.metrics.FAMILIES`), each summarised
as its `Column.cell` says; a new metric family that registers a column appears here without an edit. Numbers
sit side by side only when they measure the same thing: bits/dim on the dataset's own discrete data in the main
column (binarized numbers in a column of their own), sample quality on one feature set from each model's default
sampling mode, throughput of that same mode.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genbench.metrics import Column, main_columns
from genbench.report.cells import KIND_MARK, Cell, fmt
from genbench.report.records import (
    FAILED,
    NO_LIKELIHOOD,
    NOT_RUN,
    Group,
    Run,
    agrees,
    candidates,
    reason,
    variant_key,
    variants,
)
from genbench.results import REQUIRED_METRIC_KEYS, atomic_write_text

FEATURE_ORDER = ("inception", "domain", "raw")  # the most standard feature set the table's rows share wins
FP32 = ("float32", "fp32", "torch.float32")
KIND_RANK = {"exact": 0, "lower_bound": 1, "estimate": 2}
DATA_ROW = "data (held-out)"
RUN_COLUMNS = ("dataset", "model", "seed", "status", "parameters", "train_steps", "train_wall_time_s", "run_dir")
Table = tuple[list[str], list[list[str]]]

# ----------------------------------------------------------------------------- likelihood cells


def likelihood_cells(group: Group, data: str = "discrete", name: str = "nll_bpd") -> list[Cell]:
    """One cell per likelihood method on `data` (the dataset's `discrete` levels, or `binarized`), main first.

    The main one is the tightest honest number: exact, else the lowest bound, else an estimate. Numbers on
    other data (a DBM's binarization) never enter: bits/dim on binarized digits do not compare with 17 levels.
    """
    cells = []
    for key, ms in variants(group, name).items():
        m = ms[0]
        if m.get("data", "discrete") != data or not agrees(m, "source", "model"):
            continue
        cells.append(Cell.of(ms, mark=KIND_MARK[m["kind"]], note=likelihood_note(ms), kind=m["kind"], key=key))
    cells.sort(key=lambda c: (KIND_RANK.get(c.kind, 3), c.mean))
    return cells


def likelihood_note(ms: list[dict[str, Any]]) -> str:
    """The method, and what a reader must know to read the number: dequantized data; for AIS, the Gaussian
    observation noise it assumed and BDMC's gap (how far from converged the bound may be)."""
    m = ms[0]
    parts = [m.get("method", "")]
    if m.get("dequantized") and m.get("method") != "dequantized":
        parts.append("dequantized")
    sigmas = {x.get("obs_sigma") for x in ms} - {None}
    if sigmas:
        parts.append("σ = " + "/".join(fmt(v, 2) for v in sorted(sigmas)))
    floors = [x["obs_floor_bpd"] for x in ms if x.get("obs_floor_bpd") is not None]
    if floors:  # what the observation noise alone costs: the training images as the generator
        parts.append(f"the data itself ≤ {fmt(sum(floors) / len(floors), 3)} under this σ")
    gaps = [x["bdmc_gap_nats"] for x in ms if x.get("bdmc_gap_nats") is not None]
    if gaps:
        parts.append(f"BDMC gap {fmt(sum(gaps) / len(gaps), 2)} nats")
    paired = [x for x in ms if x.get("paired_gap_nats") is not None]
    if paired:
        gap = sum(x["paired_gap_nats"] for x in paired) / len(paired)
        parts.append(f"{fmt(gap, 2):s} nats vs {paired[0]['paired_method']} on the same {paired[0]['paired_n']}")
    return ", ".join(p for p in parts if p)


def main_likelihood(group: Group, data: str = "discrete") -> Cell:
    cells = likelihood_cells(group, data)
    if cells:
        return cells[0]
    if not group.all_failed and group.info.get("likelihood") == "none":
        return Cell(note=NO_LIKELIHOOD)
    if data == "discrete" and likelihood_cells(group, "binarized"):
        return Cell(note="n/a: binarized data")
    return Cell(note=reason(group))


# ----------------------------------------------------------------------------- sample quality and speed


def table_features(groups: list[Group], names: list[str]) -> str | None:
    """The most standard feature set on which every group with sample-quality numbers has them."""
    have = []
    for g in groups:
        found = {ms[0].get("features") for n in names for ms in variants(g, n).values()} - {None}
        if found:
            have.append(found)
    common = set.intersection(*have) if have else set()
    ranked = sorted(common, key=lambda f: FEATURE_ORDER.index(f) if f in FEATURE_ORDER else len(FEATURE_ORDER))
    return ranked[0] if ranked else None


def quality_cell(group: Group, name: str, features: str | None, source: str = "model", mode: str | None = None) -> Cell:
    """`name` of the group's default sampling mode (or `mode`) on `features`; source `model` or `data`."""
    mode = mode if mode is not None else group.default_mode
    fields = {"features": features, "source": source} | ({"mode": mode} if source == "model" else {})
    found = candidates(group, name, **fields)
    if len(found) == 1:
        return Cell.of(found[0], key=variant_key(found[0][0])[1])
    if len(found) > 1:
        return Cell(note=f"n/a: {len(found)} variants match (see all metrics)")
    return Cell(note=reason(group))


def throughput_cell(group: Group, with_device: bool = True, mode: str | None = None) -> Cell:
    """Samples/s of the default sampling mode (or `mode`), fp32, eager, at the largest batch measured.

    The mode is the one whose samples the quality columns score, so a row's speed and quality describe one
    sampler (a 10-step Gibbs chain's speed never sits beside a 200-step chain's FID).
    """
    mode = mode if mode is not None else group.default_mode
    found = [
        ms
        for ms in variants(group, "sample_throughput").values()
        if ms[0].get("dtype", "float32") in FP32 and not ms[0].get("compile") and ms[0].get("mode") == mode
    ]
    if not found:
        return Cell(note=reason(group))
    best = max(found, key=lambda ms: ms[0].get("batch_size") or 0)
    m = best[0]
    parts = [m.get("mode") if len(group.info.get("sampling_modes") or []) > 1 else None, f"b={m.get('batch_size')}"]
    parts.append(m.get("device") if with_device else None)
    loads = [x.get("load_avg_1m") for x in best if x.get("load_avg_1m") is not None]
    cores = threads_of(m)
    if loads and cores and max(loads) > cores:
        parts.append(f"load {max(loads):.1f} > {cores} threads")
    return Cell.of(best, note=", ".join(p for p in parts if p))


def threads_of(metric: dict[str, Any]) -> int | None:
    """The number of threads (CPU) a timing ran with, from its device text 'cpu (x86_64, 2 threads)'."""
    device = str(metric.get("device") or "")
    if "threads" not in device:
        return None
    try:
        return int(device.rsplit(",", 1)[-1].split()[0])
    except ValueError:
        return None


def train_time_cell(group: Group) -> Cell:
    """Training wall time; the note says when runs stopped at the time budget before their step budget."""
    runs = group.ok_runs
    if not runs:
        return Cell(note=FAILED)
    capped = [r.record["train"].get("steps") for r in runs if r.record["train"].get("stopped_by") == "max_minutes"]
    span = f"{min(capped)}–{max(capped)}" if capped and min(capped) != max(capped) else str(capped[0] if capped else "")
    note = f"{len(capped)}/{len(runs)} hit max_minutes at {span} steps" if capped else ""
    times = [{"value": r.record["train"]["wall_time_s"]} for r in runs if r.record["train"].get("wall_time_s")]
    return Cell.of(times, note=note) if times else Cell(note="not recorded")


def plain_cell(group: Group, name: str) -> Cell:
    """The model's one variant of `name` (a real-data floor of the same name goes in the reference rows)."""
    found = candidates(group, name, source="model")
    if len(found) == 1:
        return Cell.of(found[0], mark=KIND_MARK.get(found[0][0]["kind"], ""))
    return Cell(note=f"n/a: {len(found)} variants (see all metrics)" if found else reason(group))


# ----------------------------------------------------------------------------- the main table


def uniform(groups: list[Group], fn: Callable[[Group], str | None]) -> str | None:
    """The value `fn` gives every group that has one, if they all agree."""
    values = {v for v in map(fn, groups) if v}
    return values.pop() if len(values) == 1 else None


def device_of(group: Group) -> str | None:
    for ms in variants(group, "sample_throughput").values():
        return ms[0].get("device") or group.ok_runs[0].record["device"]
    return None


def params_text(group: Group) -> str:
    p = group.info.get("parameters")
    if p is None:
        return "not recorded"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if p >= scale:
            return f"{p / scale:.3g}{unit}"
    return str(p)


def seeds_text(group: Group) -> str:
    failed = len(group.runs) - len(group.ok_runs)
    return str(len(group.ok_runs)) + (f" ({failed} failed)" if failed else "")


def common_preset(groups: list[Group]) -> str | None:
    """The eval preset most runs of the table used (rows that used another one are flagged)."""
    counts = Counter(r.preset for g in groups for r in g.ok_runs if r.preset)
    return counts.most_common(1)[0][0] if counts else None


def model_label(group: Group, preset: str | None) -> str:
    other = sorted(group.presets - {preset}) if preset else []
    return group.label + (f" (eval={'/'.join(other)}: other protocol)" if other else "")


def column_cells(groups: list[Group], column: Column, features: str | None, with_device: bool) -> list[Cell]:
    if column.cell == "likelihood":
        return [main_likelihood(g) for g in groups]
    if column.cell == "quality":
        return [with_fields(quality_cell(g, column.metric, features), column.note_fields) for g in groups]
    if column.cell == "throughput":
        return [throughput_cell(g, with_device=with_device) for g in groups]
    return [plain_cell(g, column.metric) for g in groups]


NOTE_LABELS = {"interval": "bootstrap range"}  # a field's name in a cell, where the record's name says too little


def with_fields(cell: Cell, fields: tuple[str, ...]) -> Cell:
    """The cell, its note naming `fields` of the metrics behind it (where they all agree)."""
    parts = [cell.note] if cell.note else []
    for f in fields:
        value = cell.first(f)
        if isinstance(value, list):
            value = "[" + ", ".join(fmt(v, 3) for v in value) + "]"
        if value is not None:
            parts.append(f"{NOTE_LABELS.get(f, f.replace('_', ' '))} {value}")
    cell.note = ", ".join(parts)
    return cell


def column_title(column: Column, features: str | None, device: str | None) -> str:
    inside = [p for p in (features if column.cell == "quality" else None, column.unit) if p]
    if column.cell == "throughput" and device:
        inside = [device]
    return column.title + (f" ({', '.join(inside)})" if inside else "")


def main_table(groups: list[Group], columns: list[Column] | None = None) -> Table:
    """Header and rows of the comparison table of one dataset, then its reference rows: the baselines' bits/dim
    (`genbench.metrics.baselines`) and real held-out data scored like samples (the sample-quality floor).

    The shared feature set and device go in the header; a row whose eval preset differs from the table's is
    flagged in its model cell.
    """
    columns = main_columns() if columns is None else columns
    # a registered metric no run of this table measured (KL to truth on digits) gets no column of its own
    columns = [
        c for c in columns if c.cell in ("likelihood", "throughput") or any(variants(g, c.metric) for g in groups)
    ]
    quality = [c.metric for c in columns if c.cell == "quality"]
    features, device = table_features(groups, quality), uniform(groups, device_of)
    preset = common_preset(groups)
    header = ["model", "seeds", "params", "likelihood"]
    cells: list[list[Cell]] = []
    # per column, the cell of each reference row (None: that row says nothing in this column)
    labels = [DATA_ROW] + [f"baseline: {m}" for m in baseline_methods(groups)]
    references: list[dict[str, Cell | None]] = []
    for column in columns:
        header.append(column_title(column, features, device))
        cells.append(column_cells(groups, column, features, with_device=not device))
        references.append(reference_cells(groups, column, features, labels, "discrete"))
        if column.cell == "likelihood" and any(likelihood_cells(g, "binarized") for g in groups):
            header.append(f"{column.title} (binarized, L = 2)")
            cells.append([main_likelihood(g, "binarized") if likelihood_cells(g, "binarized") else Cell(note="–")
                          for g in groups])  # fmt: skip
            references.append(reference_cells(groups, column, features, labels, "binarized"))
    header.append("train time (s)")
    cells.append([train_time_cell(g) for g in groups])
    references.append({})
    rows = []
    for i, g in enumerate(groups):
        kind = g.info.get("likelihood", "not recorded")
        rows.append([model_label(g, preset), seeds_text(g), params_text(g), kind] + [col[i].text() for col in cells])
    for label in labels:
        row = [ref.get(label) for ref in references]
        if any(c is not None and c.mean is not None for c in row):
            kind = "exact" if label.startswith("baseline") else "–"
            rows.append([label, "–", "–", kind] + ["–" if c is None or c.mean is None else c.text() for c in row])
    return header, rows


def baseline_methods(groups: list[Group]) -> list[str]:
    """The baselines recorded beside the models, in the order first seen."""
    found: dict[str, None] = {}
    for g in groups:
        for ms in variants(g, "nll_bpd").values():
            if ms[0].get("source") == "baseline":
                found.setdefault(ms[0]["method"], None)
    return list(found)


def reference_cells(
    groups: list[Group], column: Column, features: str | None, labels: list[str], data: str
) -> dict[str, Cell | None]:
    """The reference rows' cells of one column: baselines in a likelihood column, real data in a quality one."""
    out: dict[str, Cell | None] = {}
    for label in labels:
        if label == DATA_ROW and column.cell == "quality":
            cell = shared_cell(groups, column.metric, features=features, source="data")
            out[label] = with_fields(cell, column.note_fields) if cell.mean is not None else cell
        elif label == DATA_ROW and column.cell == "plain":  # KL to truth: a KDE on real draws, a sampler's floor
            out[label] = shared_cell(groups, column.metric, source="data")
        elif label.startswith("baseline: ") and column.cell == "likelihood":
            method = label.removeprefix("baseline: ")
            cell = shared_cell(groups, column.metric, method=method, data=data, source="baseline")
            cell.mark = KIND_MARK.get(cell.first("kind") or "", "")
            cell.note = "dequantized" if cell.first("dequantized") else ""
            out[label] = cell
    return out


def shared_cell(groups: list[Group], name: str, **fields: Any) -> Cell:
    """A number every run recorded alike (a baseline, the real-data floor): one value per protocol size.

    Every run scores the same real examples or fits the same baseline, so seeds do not add spread; where runs
    used different sizes the cell says so.
    """
    metrics: dict[tuple, dict[str, Any]] = {}
    for g in groups:
        for ms in candidates(g, name, **fields):
            for m in ms:
                metrics.setdefault((m["value"], m.get("n_gen"), m.get("n")), m)
    if not metrics:
        return Cell(note=NOT_RUN)
    cell = Cell.of(list(metrics.values()))
    if fields.get("source") == "data":
        n = cell.first("n_gen") or cell.first("n_samples")  # real examples scored, or a KDE's real centres
        cell.note = f"n = {n}" if n is not None else "several n"
    return cell


# ----------------------------------------------------------------------------- detail tables


def likelihood_table(groups: list[Group]) -> Table:
    """Every likelihood method of every model on every data variant; `*` marks the main table's number."""
    header = ["model", "method", "data", "kind", "bits/dim", "stderr over examples", "nats/example", "test examples"]
    header.append("seeds")
    rows = []
    for g in groups:
        nats, bpd = variants(g, "nll_nats"), variants(g, "nll_bpd")
        for data in ("discrete", "binarized"):
            for i, c in enumerate(likelihood_cells(g, data)):
                n_ms = nats.get(c.key, [])
                nats_text = Cell.of(n_ms, mark=c.mark).text() if n_ms else NOT_RUN
                bits = Cell(c.mean, c.std, c.n, c.mark).text()
                errors = [m["stderr"] for m in bpd[c.key] if m.get("stderr") is not None]
                stderr = fmt(sum(errors) / len(errors), 2) if errors else "–"
                method = c.note + " *" * (i == 0)
                n_test = str(bpd[c.key][0]["n"])
                rows.append([g.label, method, data, c.kind, bits, stderr, nats_text, n_test, str(c.n)])
    return header, rows


def modes_table(groups: list[Group], features: str | None) -> Table | None:
    """Sample quality and throughput per sampling mode for models whose mode changes the samples (chains)."""
    header = ["model", "mode", "network evaluations", "FID", "KID", "precision", "recall", "samples/s"]
    rows = []
    for g in groups:
        if not g.info.get("mode_changes_samples"):
            continue
        evaluations = g.info.get("network_evaluations") or {}
        for mode in g.info.get("sampling_modes") or []:
            cells = [quality_cell(g, n, features, mode=mode) for n in ("fid", "kid", "precision", "recall")]
            cells.append(throughput_cell(g, with_device=False, mode=mode))
            rows.append([g.label, mode, str(evaluations.get(mode, "–"))] + [c.text() for c in cells])
    return (header, rows) if rows else None


def all_metrics_table(groups: list[Group]) -> Table:
    """Every metric variant of every model, for the reader who wants what the main table summarises."""
    header = ["model", "metric", "variant", "kind", "value", "unit", "seeds"]
    rows = []
    for g in groups:
        names = sorted({m["name"] for r in g.ok_runs for m in r.record["metrics"]})
        for name in names:
            for key, ms in variants(g, name).items():
                label = ", ".join(f"{k}={v}" for k, v in json.loads(key).items())
                cell = Cell.of(ms, mark=KIND_MARK.get(ms[0]["kind"], ""))
                rows.append([g.label, name, label, ms[0]["kind"], cell.text(), ms[0]["unit"], str(cell.n)])
    return header, rows


# ----------------------------------------------------------------------------- formats


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "≤": r"$\le$", "≈": r"$\approx$",
    "×": r"$\times$", "→": r"$\to$", "²": r"$^2$", "σ": r"$\sigma$", ">": r"$>$", "<": r"$<$",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell (specials escaped, the report's symbols in math mode)."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)


def latex_table(header: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    """A booktabs table float, ready to `\\input` (needs `\\usepackage{booktabs}`)."""
    spec = "l" * min(2, len(header)) + "r" * (len(header) - min(2, len(header)))
    body = [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    return "\n".join(
        [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
        + [" & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule", *body, r"\bottomrule"]
        + [r"\end{tabular}", rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}", r"\end{table}", ""]
    )


def csv_rows(runs: list[Run], root: Path) -> list[dict[str, Any]]:
    """One row per run × metric (a run with no metric gets one row with the metric fields empty)."""
    rows = []
    for run in runs:
        rec = run.record
        base = {
            "dataset": rec["dataset"], "model": rec["model"], "seed": rec["seed"], "status": rec["status"],
            "parameters": (rec.get("model_info") or {}).get("parameters"), "train_steps": rec["train"].get("steps"),
            "train_wall_time_s": rec["train"].get("wall_time_s"), "run_dir": str(run.path.relative_to(root)),
        }  # fmt: skip
        rows += [{**base, **m} for m in rec["metrics"]] or [base]
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    extras = sorted({k for r in rows for k in r} - set(RUN_COLUMNS) - set(REQUIRED_METRIC_KEYS))
    fields = [*RUN_COLUMNS, *REQUIRED_METRIC_KEYS, *extras]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_value(r.get(k)) for k in fields})
    atomic_write_text(path, buf.getvalue())


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    return json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """The CSV back as dicts: numbers parsed, empty cells dropped (the inverse of `write_csv`)."""
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
