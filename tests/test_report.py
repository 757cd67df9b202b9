"""genbench.report on hand-made records (no training): statistics, kinds, reasons, LaTeX shape, CSV, claims."""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread, imsave

from genbench.report import (
    FAILED,
    NO_LIKELIHOOD,
    NOT_RUN,
    RUN_COLUMNS,
    fmt,
    group_runs,
    latex_escape,
    likelihood_table,
    load_runs,
    main,
    main_table,
    read_csv,
    report,
)
from genbench.results import Metric, new_record, save_record

DATA = {"name": "digits", "shape": [1, 8, 8], "levels": 17, "value_range": [0.0, 1.0]}
ODD = "odd_model&50%"  # a name full of LaTeX specials


def bpd(value: float, kind: str, method: str) -> Metric:
    return Metric("nll_bpd", value, "bits/dim", kind, 0.01, 100, "test", {"method": method})


def fid(value: float, name: str = "fid") -> Metric:
    return Metric(name, value, "-", "estimate", None, 500, "test", {"features": "domain", "n_gen": 500})


def chain_fid(value: float, length: int) -> Metric:
    extra = {"features": "domain", "n_gen": 500, "chain_length": length}
    return Metric("fid", value, "-", "estimate", None, 500, "test", extra)


def speed(value: float, mode: str = "default") -> Metric:
    extra = {"device": "cpu (x86_64, 2 threads)", "batch_size": 64, "dtype": "float32", "mode": mode}
    return Metric("sample_throughput", value, "samples/s", "measured", None, None, None, extra)


# model -> (likelihood kind, latent_dim, {seed: metrics or an error string for a failed run})
GAN_SEEDS = [(0, 10, 1000), (1, 12, 1100), (2, 17, 1200)]  # seed, FID, samples/s
RUNS = {
    "gan": ("none", 32, {s: [fid(v), fid(v / 100, "kid"), speed(t)] for s, v, t in GAN_SEEDS}),
    "vae": ("lower_bound", 16, {0: [bpd(2.5, "lower_bound", "elbo"), bpd(2.4, "lower_bound", "iwae-8")],
                          1: [bpd(2.7, "lower_bound", "elbo"), bpd(2.6, "lower_bound", "iwae-8")]}),
    "pixelcnn": ("exact", None, {0: [bpd(2.0, "exact", "exact"), speed(10.0, "naive"), speed(50.0, "cached")]}),
    "nice": ("exact", 64, {0: [bpd(3.0, "exact", "exact")], 1: "RuntimeError: boom at step 7"}),
    "gsn": ("none", None, {0: [bpd(4.2, "estimate", "parzen"), chain_fid(80.0, 10), fid(50.0), chain_fid(60.0, 100)]}),
    ODD: ("exact", None, {0: "ValueError: bad"}),
}  # fmt: skip


def write_run(root: Path, model: str, seed: int, kind: str, latent: int | None, body: list[Metric] | str) -> None:
    run_dir = root / "digits" / model / f"seed{seed}"
    rec = new_record(model=model, dataset="digits", seed=seed, config={"model": model}, device="cpu")
    rec["model_info"] = {"likelihood": kind, "parameters": 12345, "latent_dim": latent, "sampling_modes": ["default"]}
    rec["data"] = DATA
    stopped_by = "max_minutes" if model == "gsn" else "max_steps"  # the gsn runs hit their time budget
    rec["train"] = {"steps": 10, "wall_time_s": 2.0 + seed, "stopped_by": stopped_by}
    if isinstance(body, str):
        rec["status"], rec["error"] = "failed", body
    else:
        rec["metrics"] = [m.to_dict() for m in body]
        run_dir.mkdir(parents=True, exist_ok=True)
        imsave(run_dir / "samples.png", np.full((8, 8), 0.1 * seed), cmap="gray", vmin=0, vmax=1)
        rows = [{"step": s, "loss": 1.0 / s + seed, "aux": 0.0} for s in (1, 2, 3)]
        with open(run_dir / "curve.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step", "loss", "aux"])
            w.writeheader()
            w.writerows(rows)
    save_record(rec, run_dir)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for model, (kind, latent, seeds) in RUNS.items():
        for seed, body in seeds.items():
            write_run(root, model, seed, kind, latent, body)
    return root


@pytest.fixture(scope="module")
def table(sweep: Path) -> dict[str, dict[str, str]]:
    """The main table as {model: {column header: cell}}."""
    header, rows = main_table(group_runs(load_runs(sweep))["digits"])
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_mean_and_std_over_seeds(table: dict[str, dict[str, str]]) -> None:
    # FID 10, 12, 17: mean 13, sample std sqrt(((-3)^2 + (-1)^2 + 4^2) / 2) = sqrt(13).
    assert statistics.stdev([10, 12, 17]) == pytest.approx(math.sqrt(13))
    assert table["gan"]["FID (domain)"] == f"13.00 ± {fmt(math.sqrt(13), 2)}" == "13.00 ± 3.6"
    assert table["gan"]["train time (s)"] == "3.000 ± 1.0"  # 2, 3, 4
    assert table["gan"]["seeds"] == "3"
    assert table["pixelcnn"]["bits/dim"] == "= 2.000 (exact)"  # one seed: no std
    assert table["gsn"]["train time (s)"] == "2.000 (1/1 hit max_minutes at 10 steps)"


def test_kinds_and_main_likelihood(table: dict[str, dict[str, str]], sweep: Path) -> None:
    # The lowest bound wins the main column (iwae-8: mean of 2.4 and 2.6); the ELBO goes to the details.
    assert table["vae"]["bits/dim"] == "≤ 2.500 ± 0.14 (iwae-8)"
    assert table["gsn"]["bits/dim"] == "≈ 4.200 (parzen)"
    assert table["vae"]["likelihood"] == "lower_bound"
    header, rows = likelihood_table(group_runs(load_runs(sweep))["digits"])
    vae = {r[1]: r for r in rows if r[0] == "vae"}
    assert set(vae) == {"iwae-8 *", "elbo"}
    assert vae["elbo"][3] == "≤ 2.600 ± 0.14" and vae["elbo"][2] == "lower_bound"


def test_empty_cells_say_why(table: dict[str, dict[str, str]]) -> None:
    assert table["gan"]["bits/dim"] == NO_LIKELIHOOD
    assert table["pixelcnn"]["FID (domain)"] == NOT_RUN
    assert table["gsn"]["FID (domain)"] == "50.00"  # the main FID, not one at a chain length
    assert table[ODD]["bits/dim"] == FAILED and table[ODD]["FID (domain)"] == FAILED
    assert table["nice"]["seeds"] == "1 (1 failed)" and table["nice"]["bits/dim"] == "= 3.000 (exact)"
    assert table["gan"]["samples/s (cpu (x86_64, 2 threads))"] == "1100 ± 100 (default, b=64)"
    assert table["pixelcnn"]["samples/s (cpu (x86_64, 2 threads))"] == "50.00 (cached, b=64)"
    assert not any(cell in ("0", "0.0", "0.000") for row in table.values() for cell in row.values())


def check_latex(tex: str) -> None:
    """Compile-shaped: balanced braces and environments, same number of columns per row, no raw specials."""
    bare = tex.replace(r"\{", "").replace(r"\}", "")
    depth = 0
    for ch in bare:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    stack = []
    for verb, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if verb == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert not stack
    for block in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex, flags=re.S):
        cols = len(block[0])
        lines = [ln for ln in block[1].splitlines() if ln.endswith(r"\\")]
        assert all(len(re.findall(r"(?<!\\)&", ln)) == cols - 1 for ln in lines)
        assert not re.search(r"(?<!\\)[%_#]", block[1]) and "±" not in block[1] and "≤" not in block[1]


def test_latex_is_compile_shaped(sweep: Path, tmp_path: Path) -> None:
    report(sweep, tmp_path, figures=False)
    tex = (tmp_path / "comparison.tex").read_text()
    check_latex(tex)
    assert r"odd\_model\&50\%" in tex and r"\toprule" in tex and r"$\le$ 2.500 $\pm$ 0.14" in tex
    assert latex_escape("a\\b{c}~^$#") == r"a\textbackslash{}b\{c\}\textasciitilde{}\textasciicircum{}\$\#"


def test_csv_round_trips(sweep: Path, tmp_path: Path) -> None:
    report(sweep, tmp_path, figures=False)
    rows = read_csv(tmp_path / "comparison.csv")
    runs = load_runs(sweep)
    assert len(rows) == sum(max(1, len(r.record["metrics"])) for r in runs)
    for run in runs:
        mine = [r for r in rows if r["run_dir"] == str(run.path.relative_to(sweep))]
        assert all(r["model"] == run.record["model"] and r["seed"] == run.record["seed"] for r in mine)
        back = [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in mine if "name" in r]
        assert back == [{k: v for k, v in m.items() if v is not None} for m in run.record["metrics"]]


def test_claims_section(sweep: Path, tmp_path: Path) -> None:
    report(sweep, tmp_path, figures=False)
    md = (tmp_path / "comparison.md").read_text()
    section = md.split("### What the seed says, measured")[1]
    # GAN at batch 64: 1100 samples/s; PixelCNN cached 50, naive 10 -> 22x and 110x.
    assert "pixelcnn (naive) 10.00 samples/s, so the GAN is 110× faster" in section
    assert "pixelcnn (cached) 50.00 samples/s, so the GAN is 22.0× faster" in section
    assert "elbo → iwae-8 0.1000 ± 0" in section  # paired per seed: 0.1 and 0.1
    assert "ais: not measured in this run" in section
    assert "nice 64 = 64" in section and "vae 16 < 64" in section and "gan 32 < 64" in section
    assert "gan FID (domain) 13.00 ± 3.6, CV 28%" in section
    assert "RuntimeError: boom at step 7" in md  # failed runs listed with their error


def test_claims_not_measured(sweep: Path, tmp_path: Path) -> None:
    report(sweep / "digits" / "vae", tmp_path, figures=False)  # only the VAE's two seeds
    section = (tmp_path / "comparison.md").read_text().split("### What the seed says, measured")[1]
    assert section.count("not measured in this run") >= 3  # speed, flows, instability


def test_cli_writes_figures(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(sweep), "--out", str(tmp_path)]) == 0
    for stem in ("samples", "throughput_vs_fid", "bits_per_dim", "training_curves"):
        assert imread(tmp_path / f"{stem}_digits.png").ndim == 3
        assert (tmp_path / f"{stem}_digits.pdf").read_bytes().startswith(b"%PDF")
    assert "comparison.md" in capsys.readouterr().out
    assert main([str(tmp_path / "empty")]) == 2
    assert "no record.json" in capsys.readouterr().err
