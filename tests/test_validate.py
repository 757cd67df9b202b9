"""`genbench validate eval=fast` passes every row, writes its record and table; its closed forms are right."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.validate import case_sizes, text_table
from genbench.validate_likelihood import Check, grid_kl
from genbench.validate_quality import population_mmd2


def test_validate_fast_passes_every_row_and_writes_record_and_markdown(tmp_path: Path, capsys) -> None:
    assert main(["validate", "eval=fast", f"+validate_dir={tmp_path}"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "validate_fast.json").read_text())
    rows = record["rows"]
    failed = [(r["estimator"], r["case"], r["error"]) for r in rows if not r["passed"]]
    assert not failed and record["all_passed"]
    estimators = {r["estimator"] for r in rows}
    for name in (
        "ais",
        "bdmc lower",
        "bdmc upper",
        "iwae-100",
        "dbm ais log Z",
        "dbm mean-field gap",
        "parzen",
        "kl_to_truth",
        "nll_bpd",
    ):
        assert name in estimators, name
    for name in ("frechet_distance", "fid (plug-in)", "kid", "precision", "recall"):
        assert name in estimators, name
    ais_row = next(r for r in rows if r["estimator"] == "ais")
    for key in ("steps", "chains", "leapfrog", "final_step_size_mean", "accept_rate", "schedule"):
        assert key in ais_row["extra"], key
    markdown = (tmp_path / "validate_fast.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")][1:]  # the rows under the header
    assert "genbench validate eval=fast" in markdown and len(table) == len(rows)
    assert all(line.split(" | ")[7] == "pass" for line in table)
    assert "estimator" in printed and f"{len(rows)} of {len(rows)} rows pass" in printed


def test_a_failing_row_fails_the_command_and_says_which() -> None:
    rows = [Check("ais", "case", 0.0, -5.0, 0.1, "|error| <= 1", False)]
    assert "FAIL" in text_table(rows)
    with pytest.raises(GenbenchError, match="no validate sizes"):
        case_sizes("nonexistent")


def test_population_mmd_matches_a_monte_carlo_of_the_kernel() -> None:
    rng = np.random.default_rng(0)
    p = (np.zeros(3), np.eye(3))
    q = (np.array([0.5, 0.0, -0.2]), np.diag([0.5, 1.0, 2.0]))
    n = 400_000
    x1, x2 = rng.multivariate_normal(*p, n), rng.multivariate_normal(*p, n)
    y1, y2 = rng.multivariate_normal(*q, n), rng.multivariate_normal(*q, n)

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((a * b).sum(1) / 3 + 1) ** 3

    mc = k(x1, x2).mean() + k(y1, y2).mean() - 2 * k(x1, y1).mean()
    assert population_mmd2(p, q) == pytest.approx(mc, abs=0.02)


def test_grid_kl_of_a_shifted_ring_is_the_separated_gaussians_value() -> None:
    from genbench.data import ToyMixture

    ring = ToyMixture("ring8")  # components 1.5 apart, sigma 0.1: they barely overlap
    shift = torch.tensor([0.05, 0.0], dtype=torch.float64)
    assert grid_kl(ring, shift) == pytest.approx(0.05**2 / (2 * 0.1**2), rel=1e-3)
    assert math.isclose(grid_kl(ring, torch.zeros(2, dtype=torch.float64), step=0.02), 0.0, abs_tol=1e-12)
