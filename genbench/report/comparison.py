"""`genbench report DIR`: the comparison of every run record under a folder (DESIGN.md, "Records and reports").

Writes `comparison.md`, `comparison.tex` (booktabs, ready to `\\input`) and `comparison.csv` (long format), plus
the figures of `genbench.report.figures`. Numbers are mean ± sample standard deviation (ddof=1) over the seeds
whose run finished; a cell with no number says why, never a fake zero. A record that cannot be read, or whose
metrics collide, is left out and named in the report and on stderr, and the command exits non-zero; a report
that cannot be written at all leaves no old comparison behind that would look current.

References:
    Theis, van den Oord, Bethge 2016, "A note on the evaluation of generative models".
    Wu, Burda, Salakhutdinov, Grosse 2017, "On the Quantitative Analysis of Decoder-Based Generative Models".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.report import figures as figs
from genbench.report.claims import Evidence, claims_markdown
from genbench.report.records import (
    FAILED,
    NO_LIKELIHOOD,
    NOT_RUN,
    BadRecord,
    Group,
    group_runs,
    load_runs,
    load_speed_records,
)
from genbench.report.tables import (
    all_metrics_table,
    csv_rows,
    latex_table,
    likelihood_table,
    main_table,
    markdown_table,
    modes_table,
    table_features,
    write_csv,
)
from genbench.results import atomic_write_text

OUTPUTS = ("comparison.md", "comparison.tex", "comparison.csv")
LEGEND_SHORT = "mean ± std over seeds; = exact, ≤ upper bound on bits/dim, ≈ estimate"
LEGEND = (
    f"Mean ± sample std (ddof=1) over finished seeds. Bits/dim on the dataset's own discrete data: `=` exact, `≤` "
    f"upper bound on bits/dim (a stochastic lower bound on log-likelihood; dequantized densities bound the "
    f"discrete likelihood too), `≈` estimate; the method is in brackets. Sample quality and throughput come from "
    f"each model's default sampling mode; the `data (held-out)` row scores real examples outside the reference "
    f"exactly like samples. An FID's `bootstrap range` (both sides resampled, 95%) measures its sampling spread; "
    f"it sits above the value because a resample's repeated rows add to FID's finite-sample bias, so read its "
    f"width, not its position. Empty cells say why: `{NO_LIKELIHOOD}`, `{NOT_RUN}` (metric absent), `{FAILED}`."
)


def report(root: Path, out: Path | None = None, figures: bool = True) -> tuple[list[Path], list[BadRecord]]:
    """Write the comparison of every usable record under `root` into `out` (default `root`).

    Returns:
        The paths written, and the records left out with why.
    """
    root, out = Path(root), Path(out or root)
    for name in OUTPUTS:  # nothing stale survives a failed report
        (out / name).unlink(missing_ok=True)
    loaded = load_runs(root)
    datasets = group_runs(loaded.runs)
    written = [out / name for name in OUTPUTS]
    drawn: dict[str, dict[str, str]] = {}
    if figures:
        drawn = {d: figs.draw_all(groups, out, d) for d, groups in datasets.items()}
        written += [out / f"{stem}.{ext}" for fd in drawn.values() for stem in fd for ext in ("png", "pdf")]
    md = [f"# Comparison ({len(loaded.runs)} runs under `{root}`)", "", LEGEND, *bad_markdown(loaded.bad)]
    tex = []
    for dataset, groups in datasets.items():
        md += dataset_markdown(dataset, groups, drawn.get(dataset, {}))
        label = "tab:" + "".join(ch if ch.isalnum() else "-" for ch in dataset)
        tex.append(latex_table(*main_table(groups), f"Comparison on {dataset}; {LEGEND_SHORT}", label))
        tex.append(latex_table(*likelihood_table(groups), f"Likelihood details on {dataset}", f"{label}-nll"))
    evidence = Evidence(datasets, [p for r in load_speed_records(root) for p in points_with_info(r)])
    claim_figures = figs.draw_claims(evidence, out) if figures else {}
    written += [out / f"{stem}.{ext}" for stem in claim_figures.values() for ext in ("png", "pdf")]
    md += claims_markdown(evidence, claim_figures)
    atomic_write_text(written[0], "\n".join(md) + "\n")
    atomic_write_text(written[1], "% genbench report: needs \\usepackage{booktabs}\n" + "\n".join(tex))
    write_csv(csv_rows(loaded.runs, root), written[2])
    return written, loaded.bad


def points_with_info(record: dict) -> list[dict]:
    """A speed record's points, each with the model's description (family, network evaluations)."""
    return [{**p, "model_info": record.get("model_info") or {}} for p in record.get("points", [])]


def bad_markdown(bad: list[BadRecord]) -> list[str]:
    if not bad:
        return []
    return ["", "**Records left out** (unreadable or invalid):", "", *(f"- `{b.path}`: {b.reason}" for b in bad)]


def dataset_markdown(dataset: str, groups: list[Group], drawn: dict[str, str]) -> list[str]:
    """One dataset's section: main table, likelihood details, sampling modes, claims, failures, figures."""
    md = ["", f"## {dataset}", "", markdown_table(*main_table(groups)), ""]
    md += ["### Likelihood details (`*` = main table)", "", markdown_table(*likelihood_table(groups)), ""]
    modes = modes_table(groups, table_features(groups, ["fid"]))
    if modes:
        md += ["### Sampling modes that change the samples (chain lengths, diffusion steps)", ""]
        md += [markdown_table(*modes), ""]
    failures = [(g.label, r) for g in groups for r in g.runs if not r.ok]
    if failures:
        md += ["### Failed runs", ""]
        md += [f"- {m} seed {r.seed}: {r.record.get('error', 'no error recorded')}" for m, r in failures]
        md.append("")
    md += [f"![{title}]({stem}.png)" for stem, title in drawn.items()]
    if not drawn:
        md.append("(no figures: turned off, or no record carries samples, curves or metrics to plot)")
    md += ["", "<details><summary>All metrics</summary>", "", markdown_table(*all_metrics_table(groups))]
    return md + ["", "</details>", ""]


def main(argv: list[str] | None = None) -> int:
    """`genbench report DIR [--out OUT] [--no-figures]`; returns the exit code (1 when records were left out)."""
    parser = argparse.ArgumentParser(prog="genbench report", description="Tables and figures from run records.")
    parser.add_argument("dir", type=Path, help="folder searched recursively for record.json")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    parser.add_argument("--no-figures", action="store_true", help="tables only (no matplotlib)")
    args = parser.parse_args(argv)
    try:
        paths, bad = report(args.dir, args.out, figures=not args.no_figures)
    except GenbenchError as err:
        print(f"genbench report: {err}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in paths))
    for b in bad:
        print(f"genbench report: left out {b.path}: {b.reason}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
