"""Comparison tables from run records: `genbench report DIR` (DESIGN.md, "Records and reports").

Reads every `record.json` under a folder, groups runs by dataset and model, and writes
`comparison.md`, `comparison.tex` (booktabs, ready to `\\input`) and `comparison.csv` (long format),
plus the figures of `genbench.report_figures`. Numbers are mean ± sample standard deviation (ddof=1)
over the seeds whose run finished; a cell with no number says why, never a fake zero.

A likelihood cell shows its kind: `=` exact, `≤` an upper bound on bits/dim (a stochastic lower bound on
log-likelihood: ELBO, IWAE-k, AIS), `≈` an estimate (Parzen window, Theis et al. 2016). The main column
takes the tightest honest number per model: exact, else the lowest bound, else an estimate.

References:
    Goodfellow 2016, "NIPS 2016 Tutorial: Generative Adversarial Networks" (the claims the last section
        measures: one-pass sampling, latent size of flows, bounds of VAEs, instability of GAN training).
    Theis, van den Oord, Bethge 2016, "A note on the evaluation of generative models".
    Wu, Burda, Salakhutdinov, Grosse 2017, "On the Quantitative Analysis of Decoder-Based Generative Models".
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.results import RECORD_NAME, REQUIRED_METRIC_KEYS, atomic_write_text, load_record

# Models in the order the seed discusses them; others follow alphabetically.
MODEL_ORDER = ("gan", "vae", "pixelcnn", "pixelrnn", "nice", "realnvp", "dbm", "gsn")
KIND_MARK = {"exact": "=", "lower_bound": "≤", "estimate": "≈", "measured": ""}
# Fields of a metric that tell two measurements of the same name apart (method, features, batch, ...).
VARIANT_FIELDS = (
    "method", "data", "features", "k", "chain_length", "mode", "batch_size", "dtype", "compile", "device", "split",
)  # fmt: skip
FEATURE_ORDER = ("inception", "domain", "raw")
FP32 = ("float32", "fp32", "torch.float32")
CURVE_NAME = "curve.csv"  # written by genbench.train: a `step` column, then the model's scalars (loss first)
RUN_COLUMNS = ("dataset", "model", "seed", "status", "parameters", "train_steps", "train_wall_time_s", "run_dir")
NOT_RUN, FAILED, NO_LIKELIHOOD = "not run", "failed", "n/a: no likelihood"


# ----------------------------------------------------------------------------- loading and grouping


@dataclass
class Run:
    """One run directory and its validated record."""

    path: Path
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


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


def load_runs(root: Path) -> list[Run]:
    """Every record under `root`, validated, in path order."""
    paths = sorted(Path(root).rglob(RECORD_NAME))
    if not paths:
        raise GenbenchError(f"no {RECORD_NAME} under {root}; run `genbench bench` (or `-m` for a sweep) first")
    return [Run(p.parent, load_record(p)) for p in paths]


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


def model_rank(name: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), name)


def group_runs(runs: Iterable[Run]) -> dict[str, list[Group]]:
    """Runs grouped by dataset, then model (seed order inside a group)."""
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((run.record["dataset"], run.record["model"]), []).append(run)
    out: dict[str, list[Group]] = {}
    for (dataset, model), members in sorted(by_key.items(), key=lambda kv: (kv[0][0], model_rank(kv[0][1]))):
        members.sort(key=lambda r: (r.record["seed"], str(r.path)))
        out.setdefault(dataset, []).append(Group(dataset, model, members))
    return out


# ----------------------------------------------------------------------------- statistics and cells


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


@dataclass
class Cell:
    """A table cell: a mean ± std over `n` seeds with a kind mark and a note, or only a reason (`note`)."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    mark: str = ""
    note: str = ""
    kind: str = ""
    key: tuple = ()  # the metric variant the cell summarises

    @classmethod
    def of(cls, values: list[float], **kw: Any) -> Cell:
        mean, std = mean_std(values)
        return cls(mean, std, len(values), **kw)

    def text(self) -> str:
        if self.mean is None:
            return self.note
        body = fmt(self.mean) + (f" ± {fmt(self.std, 2)}" if self.std is not None else "")
        return " ".join(p for p in (self.mark, body, f"({self.note})" if self.note else "") if p)


def variant(m: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((f, m[f]) for f in VARIANT_FIELDS if m.get(f) is not None)


def variants(group: Group, name: str) -> dict[tuple, list[dict[str, Any]]]:
    """Metrics called `name` in the group's finished runs, by variant; each metric dict gains `seed`."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for run in group.ok_runs:
        for m in run.record["metrics"]:
            if m["name"] == name and m["value"] is not None:
                out.setdefault(variant(m), []).append({**m, "seed": run.record["seed"]})
    return out


def reason(group: Group) -> str:
    return FAILED if group.all_failed else NOT_RUN


def likelihood_cells(group: Group, name: str = "nll_bpd") -> list[Cell]:
    """One cell per likelihood method, the main one (exact > lowest bound > estimate) first.

    The note names the method, and the data when it is not the common discrete data (`binarized`): bits/dim
    on binarized digits do not compare with bits/dim on 17 levels.
    """
    cells = []
    for key, ms in variants(group, name).items():
        kind, fields = ms[0]["kind"], dict(key)
        note = fields.get("method", "") + (f", {fields['data']} data" if "data" in fields else "")
        cells.append(Cell.of([m["value"] for m in ms], mark=KIND_MARK[kind], note=note, kind=kind, key=key))
    rank = {"exact": 0, "lower_bound": 1, "estimate": 2}
    cells.sort(key=lambda c: (rank.get(c.kind, 3), c.mean))
    return cells


def main_likelihood(group: Group) -> Cell:
    cells = likelihood_cells(group)
    if cells:
        return cells[0]
    if not group.all_failed and group.info.get("likelihood") == "none":
        return Cell(note=NO_LIKELIHOOD)
    return Cell(note=reason(group))


def best_features(group: Group, name: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The metric `name` on the most standard features available (inception > domain > raw).

    Among variants on those features the plainest wins (fewest distinguishing fields): a GSN's main FID,
    not its FID at one chain length.
    """
    vs = list(variants(group, name).items())
    if not vs:
        return None, []
    rank = {f: i for i, f in enumerate(FEATURE_ORDER)}
    key, ms = min(vs, key=lambda kv: (rank.get(kv[1][0].get("features"), len(rank)), len(kv[0])))
    return ms[0].get("features"), ms


def sample_cell(group: Group, name: str) -> Cell:
    feats, ms = best_features(group, name)
    return Cell.of([m["value"] for m in ms], note=feats or "") if ms else Cell(note=reason(group))


def throughput_cell(group: Group, with_device: bool = True) -> Cell:
    """Samples/s of the fastest fp32 sampling mode at the largest batch measured (mode and batch named)."""
    vs = [ms for ms in variants(group, "sample_throughput").values() if ms[0].get("dtype", "float32") in FP32]
    if not vs:
        return Cell(note=reason(group))
    batch = max(ms[0].get("batch_size") or 0 for ms in vs)
    at_batch = [ms for ms in vs if (ms[0].get("batch_size") or 0) == batch]
    best = max(at_batch, key=lambda ms: statistics.fmean(m["value"] for m in ms))
    device = best[0].get("device") if with_device else None
    note = ", ".join(p for p in (best[0].get("mode"), f"b={batch}" if batch else "", device) if p)
    return Cell.of([m["value"] for m in best], note=note)


def train_time_cell(group: Group) -> Cell:
    """Training wall time; the note says when runs stopped at the time budget before their step budget."""
    runs = group.ok_runs
    if not runs:
        return Cell(note=FAILED)
    capped = [r.record["train"].get("steps") for r in runs if r.record["train"].get("stopped_by") == "max_minutes"]
    span = f"{min(capped)}–{max(capped)}" if capped and min(capped) != max(capped) else str(capped[0] if capped else "")
    note = f"{len(capped)}/{len(runs)} hit max_minutes at {span} steps" if capped else ""
    return Cell.of([r.record["train"]["wall_time_s"] for r in runs], note=note)


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


def uniform(groups: list[Group], fn: Callable[[Group], str | None]) -> str | None:
    """The value `fn` gives every group that has one, if they all agree."""
    values = {v for v in map(fn, groups) if v}
    return values.pop() if len(values) == 1 else None


def device_of(group: Group) -> str | None:
    for ms in variants(group, "sample_throughput").values():
        return ms[0].get("device") or group.ok_runs[0].record["device"]
    return None


# ----------------------------------------------------------------------------- tables


def main_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table of one dataset (shared features and device go in the header)."""
    device = uniform(groups, device_of)
    header = ["model", "seeds", "params", "likelihood", "bits/dim"]
    columns: list[list[Cell]] = [[main_likelihood(g) for g in groups]]
    for name, title in (("fid", "FID"), ("kid", "KID"), ("precision", "precision"), ("recall", "recall")):
        feats = uniform(groups, lambda g, n=name: best_features(g, n)[0])
        cells = [sample_cell(g, name) for g in groups]
        for c in cells if feats else []:
            c.note = c.note if c.mean is None else ""
        header.append(f"{title} ({feats})" if feats else title)
        columns.append(cells)
    columns.append([throughput_cell(g, with_device=not device) for g in groups])
    columns.append([train_time_cell(g) for g in groups])
    header += [f"samples/s ({device})" if device else "samples/s", "train time (s)"]
    rows = []
    for i, g in enumerate(groups):
        kind = g.info.get("likelihood", "not recorded")
        rows.append([g.model, seeds_text(g), params_text(g), kind] + [col[i].text() for col in columns])
    return header, rows


def likelihood_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """Every likelihood method of every model; `*` marks the one in the main table."""
    header = ["model", "method", "kind", "bits/dim", "nats/example", "test examples", "seeds"]
    rows = []
    for g in groups:
        nats, bpd = variants(g, "nll_nats"), variants(g, "nll_bpd")
        for i, c in enumerate(likelihood_cells(g)):
            n_ms = nats.get(c.key, [])
            nats_text = Cell.of([m["value"] for m in n_ms], mark=c.mark).text() if n_ms else NOT_RUN
            bits = Cell(c.mean, c.std, c.n, c.mark).text()
            rows.append([g.model, c.note + " *" * (i == 0), c.kind, bits, nats_text, str(bpd[c.key][0]["n"]), str(c.n)])
    return header, rows


def all_metrics_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """Every metric variant of every model, for the reader who wants what the main table summarises."""
    header = ["model", "metric", "variant", "kind", "value", "unit", "seeds"]
    rows = []
    for g in groups:
        names = sorted({m["name"] for r in g.ok_runs for m in r.record["metrics"]})
        for name in names:
            for key, ms in variants(g, name).items():
                label = ", ".join(f"{k}={v}" for k, v in key)
                cell = Cell.of([m["value"] for m in ms], mark=KIND_MARK.get(ms[0]["kind"], ""))
                rows.append([g.model, name, label, ms[0]["kind"], cell.text(), ms[0]["unit"], str(cell.n)])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "≤": r"$\le$", "≈": r"$\approx$",
    "×": r"$\times$", "→": r"$\to$",
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


# ----------------------------------------------------------------------------- CSV (long format)


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


# ----------------------------------------------------------------------------- the report


def report(root: Path, out: Path | None = None, figures: bool = True) -> list[Path]:
    """Write the comparison of every record under `root` into `out` (default `root`); return the paths."""
    from genbench import report_claims, report_figures  # matplotlib only when figures are drawn

    root, out = Path(root), Path(out or root)
    runs = load_runs(root)
    datasets = group_runs(runs)
    written = [out / "comparison.md", out / "comparison.tex", out / "comparison.csv"]
    figs: dict[str, dict[str, str]] = {}
    if figures:
        figs = {d: report_figures.draw_all(groups, out, d) for d, groups in datasets.items()}
        written += [out / f"{stem}.{ext}" for fd in figs.values() for stem in fd for ext in ("png", "pdf")]
    md, tex = [f"# Comparison ({len(runs)} runs under `{root}`)", "", LEGEND], []
    for dataset, groups in datasets.items():
        md += dataset_markdown(dataset, groups, figs.get(dataset, {}), report_claims.claims_markdown(groups))
        tex.append(latex_table(*main_table(groups), f"Comparison on {dataset}; {LEGEND_SHORT}", f"tab:{dataset}"))
        tex.append(latex_table(*likelihood_table(groups), f"Likelihood details on {dataset}", f"tab:{dataset}-nll"))
    atomic_write_text(written[0], "\n".join(md) + "\n")
    atomic_write_text(written[1], "% genbench report: needs \\usepackage{booktabs}\n" + "\n".join(tex))
    write_csv(csv_rows(runs, root), written[2])
    return written


LEGEND_SHORT = "mean ± std over seeds; = exact, ≤ upper bound on bits/dim, ≈ estimate"
LEGEND = (
    f"Mean ± sample std (ddof=1) over finished seeds. Bits/dim: `=` exact, `≤` upper bound on bits/dim "
    f"(a stochastic lower bound on log-likelihood), `≈` estimate; the method is in brackets. "
    f"Empty cells say why: `{NO_LIKELIHOOD}`, `{NOT_RUN}` (metric absent), `{FAILED}` (run failed)."
)


def dataset_markdown(dataset: str, groups: list[Group], figs: dict[str, str], claims: list[str]) -> list[str]:
    """One dataset's section: main table, likelihood details, the seed's claims, failures, figures, all metrics."""
    md = ["", f"## {dataset}", "", markdown_table(*main_table(groups)), ""]
    md += ["### Likelihood details (`*` = main table)", "", markdown_table(*likelihood_table(groups)), "", *claims]
    failures = [(g.model, r) for g in groups for r in g.runs if not r.ok]
    if failures:
        md += ["### Failed runs", ""]
        md += [f"- {m} seed {r.record['seed']}: {r.record.get('error', 'no error recorded')}" for m, r in failures]
        md.append("")
    md += [f"![{title}]({stem}.png)" for stem, title in figs.items()]
    if not figs:
        md.append("(no figures: turned off, or no record carries samples, curves or metrics to plot)")
    md += ["", "<details><summary>All metrics</summary>", "", markdown_table(*all_metrics_table(groups))]
    return md + ["", "</details>", ""]


def main(argv: list[str] | None = None) -> int:
    """`genbench report DIR [--out OUT] [--no-figures]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="genbench report", description="Tables and figures from run records.")
    parser.add_argument("dir", type=Path, help="folder searched recursively for record.json")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    parser.add_argument("--no-figures", action="store_true", help="tables only (no matplotlib)")
    args = parser.parse_args(argv)
    try:
        paths = report(args.dir, args.out, figures=not args.no_figures)
    except GenbenchError as err:
        print(f"genbench report: {err}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
