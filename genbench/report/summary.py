"""The few lines `genbench bench` prints when a run ends: where the record is, what happened, the main numbers.

The numbers are the main table's cells for this one run (`genbench.report.tables`), so the summary and the
comparison never disagree about which number is the main one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbench.report.records import Group, Run
from genbench.report.tables import main_likelihood, quality_cell, table_features, throughput_cell


def run_summary(record: dict[str, Any], run_dir: Path | str) -> str:
    """A short, human summary of one finished (or failed) run."""
    run_dir = Path(run_dir)
    train = record.get("train") or {}
    lines = [f"genbench: {record['model']} on {record['dataset']}, seed {record['seed']}: {record['status']}"]
    steps, wall = train.get("steps"), train.get("wall_time_s")
    resumed = f", resumed from step {train['resumed_from']}" if train.get("resumed_from") is not None else ""
    stopped = f", stopped by {train['stopped_by']}" if train.get("stopped_by") else ""
    lines.append(f"  trained {steps} steps in {wall or 0:.1f} s{stopped}{resumed}")
    if record["status"] != "ok":
        lines.append(f"  error: {record.get('error', 'not recorded')}")
    else:
        group = Group(record["dataset"], record["model"], [Run(run_dir, record)])
        features = table_features([group], ["fid"])
        bits = main_likelihood(group).text()
        fid = quality_cell(group, "fid", features).text()
        speed = throughput_cell(group).text()
        lines.append(f"  bits/dim {bits}; FID ({features or 'no features'}) {fid}; samples/s {speed}")
    lines.append(f"  record: {run_dir / 'record.json'}  samples: {run_dir / 'samples.png'}")
    return "\n".join(lines)
