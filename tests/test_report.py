"""genbench.report on hand-made records (no training): statistics, kinds, reasons, LaTeX shape, CSV, claims."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread, imsave

from genbench.report import claims, figures
from genbench.report.cells import fmt
from genbench.report.comparison import main, report
from genbench.report.records import FAILED, NO_LIKELIHOOD, NOT_RUN, group_runs, load_runs
from genbench.report.tables import RUN_COLUMNS, latex_escape, likelihood_table, main_table, quality_cell, read_csv
from genbench.results import Metric, new_record, save_record

DATA = {"name": "digits", "shape": [1, 8, 8], "levels": 17, "value_range": [0.0, 1.0]}
ODD = "odd_model&50%"  # a name full of LaTeX specials


def bpd(value: float, kind: str, method: str, data: str = "discrete") -> Metric:
    extra = {"method": method, "data": data}
    return Metric("nll_bpd", value, "bits/dim", kind, 0.01, 100, "test", extra, ("method", "data"))


def baseline(value: float, method: str, data: str = "discrete") -> Metric:
    extra = {"method": method, "data": data, "source": "baseline"}
    return Metric("nll_bpd", value, "bits/dim", "exact", 0.0, 100, "test", extra, ("method", "data", "source"))


def fid(value: float, name: str = "fid", mode: str = "default", source: str = "model") -> Metric:
    extra = {"features": "domain", "n_gen": 500, "mode": mode, "source": source}
    return Metric(name, value, "-", "estimate", None, 500, "test", extra, ("features", "mode", "source"))


def speed(value: float, mode: str = "default", batch: int = 64) -> Metric:
    extra = {"device": "cpu (x86_64, 2 threads)", "batch_size": batch, "dtype": "float32", "mode": mode}
    return Metric("sample_throughput", value, "samples/s", "measured", None, None, None, extra, tuple(extra))


# model -> (family, likelihood kind, latent_dim, sampling modes, {seed: metrics or an error string for a failed run})
GAN_SEEDS = [(0, 10, 1000), (1, 12, 1100), (2, 17, 1200)]  # seed, FID, samples/s
GSN_MODES = ["default", "burn10", "burn100"]
RUNS = {
    "gan": ("adversarial", "none", 32, ["default"],
            {s: [fid(v), fid(v / 100, "kid"), speed(t), fid(4.0, source="data"), baseline(4.087, "uniform")]
             for s, v, t in GAN_SEEDS}),
    "vae": ("variational", "lower_bound", 16, ["default"],
            {0: [bpd(2.5, "lower_bound", "elbo"), bpd(2.4, "lower_bound", "iwae-8")],
             1: [bpd(2.7, "lower_bound", "elbo"), bpd(2.6, "lower_bound", "iwae-8")]}),
    "pixelcnn": ("autoregressive", "exact", None, ["cached", "naive"],
                 {0: [bpd(2.0, "exact", "exact"), speed(10.0, "naive"), speed(50.0, "cached")]}),
    "nice": ("flow", "exact", 64, ["default"], {0: [bpd(3.0, "exact", "exact")], 1: "RuntimeError: boom at step 7"}),
    "dbm": ("boltzmann", "estimate", None, ["default"],
            {0: [bpd(0.5, "estimate", "estimate", "binarized"), baseline(1.0, "uniform", "binarized"),
                 *(Metric("mean_field_gap", g, "nats", "lower_bound", 0.1, 297, "test", {"samples": k}, ("samples",))
                   for k, g in ((1, 2.0), (100, 3.5)))]}),
    "gsn": ("markov_chain", "none", None, GSN_MODES,
            {0: [bpd(4.2, "estimate", "parzen"), fid(80.0, mode="burn10"), fid(50.0), fid(60.0, mode="burn100"),
                 speed(900.0, "burn10"), speed(100.0), speed(120.0, "burn100"), speed(5.0, batch=1)]}),
    ODD: ("other", "exact", None, ["default"], {0: "ValueError: bad"}),
}  # fmt: skip


def write_run(
    root: Path, model: str, seed: int, spec: tuple, body: list[Metric] | str, preset: str = "default"
) -> None:
    write_run_at(root / "digits" / model / f"seed{seed}", model, seed, body, spec, preset)


def write_run_at(
    run_dir: Path, model: str, seed: int, body: list[Metric] | str, spec: tuple = (), preset: str = "default"
) -> None:
    family, kind, latent, modes = spec or RUNS.get(model, RUNS["gan"])[:4]
    rec = new_record(model=model, dataset="digits", seed=seed, config={"model": model}, device="cpu")
    rec["model_info"] = {"likelihood": kind, "family": family, "parameters": 12345, "latent_dim": latent}
    rec["model_info"] |= {"sampling_modes": modes, "mode_changes_samples": family == "markov_chain"}
    rec["model_info"]["network_evaluations"] = {m: 1 if family != "autoregressive" else 64 for m in modes}
    rec["eval_preset"] = preset
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
    for model, (*spec, seeds) in RUNS.items():
        for seed, body in seeds.items():
            write_run(root, model, seed, tuple(spec), body)
    return root


@pytest.fixture(scope="module")
def table(sweep: Path) -> dict[str, dict[str, str]]:
    """The main table as {model: {column header: cell}}."""
    header, rows = main_table(group_runs(load_runs(sweep).runs)["digits"])
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
    header, rows = likelihood_table(group_runs(load_runs(sweep).runs)["digits"])
    vae = {r[1]: r for r in rows if r[0] == "vae"}
    assert set(vae) == {"iwae-8 *", "elbo"}
    assert vae["elbo"][4] == "≤ 2.600 ± 0.14" and vae["elbo"][3] == "lower_bound" and vae["elbo"][2] == "discrete"
    assert vae["elbo"][5] == "0.010"  # the per-example standard error beside the spread over seeds


def test_empty_cells_say_why(table: dict[str, dict[str, str]]) -> None:
    assert table["gan"]["bits/dim"] == NO_LIKELIHOOD
    assert table["pixelcnn"]["FID (domain)"] == NOT_RUN
    assert table["gsn"]["FID (domain)"] == "50.00"  # the main FID, not one at a chain length
    assert table[ODD]["bits/dim"] == FAILED and table[ODD]["FID (domain)"] == FAILED
    assert table["nice"]["seeds"] == "1 (1 failed)" and table["nice"]["bits/dim"] == "= 3.000 (exact)"
    assert table["gan"]["samples/s (cpu (x86_64, 2 threads))"] == "1100 ± 100 (b=64)"
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
    runs = load_runs(sweep).runs
    assert len(rows) == sum(max(1, len(r.record["metrics"])) for r in runs)
    for run in runs:
        mine = [r for r in rows if r["run_dir"] == str(run.path.relative_to(sweep))]
        assert all(r["model"] == run.record["model"] and r["seed"] == run.record["seed"] for r in mine)
        back = [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in mine if "name" in r]
        assert back == [{k: v for k, v in m.items() if v is not None} for m in run.record["metrics"]]


def test_claims_section(sweep: Path, tmp_path: Path) -> None:
    report(sweep, tmp_path, figures=False)
    md = (tmp_path / "comparison.md").read_text()
    section = md.split("## What the seed says, measured")[1]
    assert [f"### ({k})" in section for k in "abcdefg"] == [True] * 7
    claim = {k: section.split(f"### ({k})")[1].split("###")[0] for k in "abcdef"}
    # (a) one image size: the GAN against the autoregressive family, same (default) mode and batch
    assert "gan 1100 and pixelcnn 50.00 samples/s at batch 64: 22.0× (64 sequential network evaluations" in claim["a"]
    # (b) no toy sweep: the VAE's chain of bounds, paired by seed; AIS absent
    assert "elbo → iwae-8 0.1000 ± 0" in claim["b"] and "ais: not measured in this run" in claim["b"]
    assert "needs the toy-2D capacity sweep" in claim["b"]
    # (c) the DBM's estimate is labelled as such; (d) the GSN's chain, one FID per mode
    assert "≈ 0.5000 bits/dim on binarized data, labelled an estimate" in claim["c"]
    assert "h1 summed out): 1: 2.00, 100: 3.50" in claim["c"]  # the bound's gap against its importance samples
    assert "sits at least 3.50 nats per example below log p*(v) (100 samples)" in claim["c"]
    assert "FID against chain steps" in claim["d"]
    # (e) a flow's latent equals the data size; (f) without snapshots, the spread over seeds
    assert "nice 64 for D = 64" in claim["e"] and "Flows cannot choose" in claim["e"]
    assert "gan FID 13.00 ± 3.6, CV 28%" in claim["f"] and "FID over training is not measured" in claim["f"]
    assert "**Verdict:**" in claim["a"] and "RuntimeError: boom at step 7" in md  # failed runs listed


def diffusion_sweep(root: Path, fids: dict[str, float]) -> Path:
    """The GAN's three seeds beside one diffusion run whose modes spend 10, 50 and 1000 network evaluations."""
    for seed, body in RUNS["gan"][4].items():
        write_run(root, "gan", seed, tuple(RUNS["gan"][:4]), body)
    modes, evaluations = list(fids), {"ddim10": 10, "ddim50": 50, "ddpm1000": 1000}
    body = [fid(v, mode=m) for m, v in fids.items()] + [speed(1000.0 / evaluations[m], m) for m in modes]
    run_dir = root / "digits" / "ddpm" / "seed0"
    write_run_at(run_dir, "ddpm", 0, body, ("diffusion", "lower_bound", None, modes))
    rec = json.loads((run_dir / "record.json").read_text())
    rec["model_info"] |= {"network_evaluations": evaluations, "mode_changes_samples": True}
    save_record(rec, run_dir)
    return root


def test_claim_diffusion_steps_to_the_gans_fid(tmp_path: Path) -> None:
    # The GAN: FID 13 (10, 12, 17) at 1100 samples/s; ddim50 is the first mode at or below it, 20 samples/s.
    sweep = diffusion_sweep(tmp_path / "reached", {"ddim10": 30.0, "ddim50": 12.0, "ddpm1000": 11.0})
    report(sweep, tmp_path / "out", figures=False)
    claim = (tmp_path / "out" / "comparison.md").read_text().split("### (g)")[1]
    assert "10 (ddim10): 30.0, 100 samples/s; 50 (ddim50): 12.0, 20.0 samples/s; 1000 (ddpm1000)" in claim
    assert "gan: FID 13.0, 1 evaluation, 1100 samples/s" in claim
    assert (
        "reaches the GAN's FID (13.0) at 50 network evaluations per sample (ddim50: FID 12.0), sampling 55.0× "
        "slower" in claim
    )
    sweep = diffusion_sweep(tmp_path / "not", {"ddim10": 30.0, "ddim50": 20.0, "ddpm1000": 14.0})
    report(sweep, tmp_path / "out2", figures=False)
    claim = (tmp_path / "out2" / "comparison.md").read_text().split("### (g)")[1]
    assert "does not reach the GAN's FID: its best is 14.0 at 1000 network evaluations per sample" in claim


def test_claims_not_measured(sweep: Path, tmp_path: Path) -> None:
    report(sweep / "digits" / "vae", tmp_path, figures=False)  # only the VAE's two seeds
    section = (tmp_path / "comparison.md").read_text().split("## What the seed says, measured")[1]
    assert section.count("not measured in this run") >= 5  # a, c, d, e, f lack their models


def test_cli_writes_figures(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(sweep), "--out", str(tmp_path)]) == 0
    for stem in ("samples", "throughput_vs_fid", "bits_per_dim", "training_curves"):
        assert imread(tmp_path / f"{stem}_digits.png").ndim == 3
        assert (tmp_path / f"{stem}_digits.pdf").read_bytes().startswith(b"%PDF")
    assert "comparison.md" in capsys.readouterr().out
    assert main([str(tmp_path / "empty")]) == 2
    assert "no record.json" in capsys.readouterr().err


def test_binarized_numbers_stay_out_of_the_discrete_column(table: dict[str, dict[str, str]]) -> None:
    # The DBM's 0.5 bits/dim are on binarized data (uniform = 1 bit/dim), not on 17 levels (uniform = 4.09).
    assert table["dbm"]["bits/dim"] == "n/a: binarized data"
    assert table["dbm"]["bits/dim (binarized, L = 2)"] == "≈ 0.5000 (estimate)"
    assert table["vae"]["bits/dim (binarized, L = 2)"] == "–"


def test_a_chain_samplers_speed_comes_from_the_mode_of_its_fid(table: dict[str, dict[str, str]]) -> None:
    # The GSN's default mode: FID 50 and 100 samples/s at the largest batch; burn10's 900 samples/s (and its
    # FID 80) belong to another sampler and must not sit in the same row.
    assert table["gsn"]["FID (domain)"] == "50.00"
    assert table["gsn"]["samples/s (cpu (x86_64, 2 threads))"] == "100.0 (default, b=64)"


def test_modes_table_lists_every_mode_of_a_chain_sampler(sweep: Path, tmp_path: Path) -> None:
    report(sweep, tmp_path, figures=False)
    md = (tmp_path / "comparison.md").read_text()
    section = md.split("### Sampling modes that change the samples")[1].split("###")[0]
    rows = {line.split(" | ")[1]: line for line in section.splitlines() if line.startswith("| gsn")}
    assert set(rows) == set(GSN_MODES)
    assert "80.00" in rows["burn10"] and "900.0" in rows["burn10"] and "60.00" in rows["burn100"]


def test_data_row_is_the_real_data_floor(table: dict[str, dict[str, str]]) -> None:
    # every GAN seed scored the same real examples: one number, with the size it was measured at
    assert table["data (held-out)"]["FID (domain)"] == "4.000 (n = 500)"
    assert table["data (held-out)"]["bits/dim"] == "–"


def test_colliding_metrics_are_refused_not_averaged(sweep: Path, tmp_path: Path, capsys) -> None:
    # FID at three sample sizes that do not name the size in their variant would be averaged into one cell.
    root = tmp_path / "sweep"
    write_run(root, "gan", 0, RUNS["gan"][:4], [fid(40.0), fid(30.0), fid(25.0)])
    write_run(root, "vae", 0, RUNS["vae"][:4], RUNS["vae"][4][0])
    assert main([str(root), "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert "left out" in err and "gan/seed0" in err and "3 'fid' metrics share the variant" in err
    md = (root / "comparison.md").read_text()
    assert "Records left out" in md and "| gan |" not in md and "| vae |" in md


def test_rows_from_another_eval_preset_are_flagged(sweep: Path, tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for seed, body in RUNS["gan"][4].items():
        write_run(root, "gan", seed, RUNS["gan"][:4], body)
    write_run(root, "vae", 0, RUNS["vae"][:4], RUNS["vae"][4][0], preset="fast")
    header, rows = main_table(group_runs(load_runs(root).runs)["digits"])
    assert [r[0] for r in rows[:2]] == ["gan", "vae (eval=fast: other protocol)"]


def test_baselines_are_rows_of_their_own(table: dict[str, dict[str, str]]) -> None:
    row = table["baseline: uniform"]
    assert row["bits/dim"] == "= 4.087" and row["bits/dim (binarized, L = 2)"] == "= 1.000"
    assert row["FID (domain)"] == "–" and row["likelihood"] == "exact"
    assert table["gan"]["bits/dim"] == NO_LIKELIHOOD  # a baseline recorded in a GAN run is not the GAN's number


def test_settings_split_one_models_runs(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for width, seed in [(8, 0), (8, 1), (32, 0)]:
        run_dir = root / "digits" / "gan" / f"w{width}s{seed}"
        write_run_at(run_dir, "gan", seed, [fid(float(width + seed))])
        (run_dir / "config.yaml").write_text(f"dataset:\n  name: digits\nmodel:\n  name: gan\n  width: {width}\n")
    (groups,) = group_runs(load_runs(root).runs).values()
    assert [(g.label, len(g.runs)) for g in groups] == [("gan (width=32)", 1), ("gan (width=8)", 2)]
    assert groups[1].settings == {"model.width": 8}
    cells = {g.label: quality_cell(g, "fid", "domain").text() for g in groups}
    assert cells == {"gan (width=8)": "8.500 ± 0.71", "gan (width=32)": "32.00"}  # seeds of one width only
    # another value of a dataset setting is another table
    run_dir = root / "digits" / "gan" / "grid"
    write_run_at(run_dir, "gan", 0, [fid(1.0)])
    (run_dir / "config.yaml").write_text(
        "dataset:\n  name: digits\n  mixture: grid25\nmodel:\n  name: gan\n  width: 8\n"
    )
    tables = group_runs(load_runs(root).runs)
    assert sorted(tables) == ["digits", "digits (mixture=grid25)"]


def speed_record(model: str, family: str, evaluations: int, shape: str, latency: float, flops: float) -> dict:
    point = {"model": model, "mode": "default", "dtype": "fp32", "batch_size": 1, "status": "ok", "shape": shape,
             "latency_median_s": latency, "throughput": 1 / latency, "flops_per_sample": flops}  # fmt: skip
    info = {"family": family, "sampling_modes": ["default"], "network_evaluations": {"default": evaluations}}
    return {"kind": "speed", "model": model, "model_info": info, "points": [point]}


def test_claim_a_from_speed_records_at_several_sizes(tmp_path: Path) -> None:
    """Latency that grows with the pixels for the autoregressive model and stays flat for the GAN: supported,
    with the FLOPs ratio set beside the time ratio (depth, not compute)."""
    root = tmp_path / "claims"
    write_run(root, "gan", 0, RUNS["gan"][:4], [fid(10.0)])
    for shape, d in (("8x8", 64), ("16x16", 256), ("32x32", 1024)):
        for record in (speed_record("gan", "adversarial", 1, shape, 0.001, 2e6),
                       speed_record("pixelcnn", "autoregressive", d, shape, 0.01 * d, 6e6)):  # fmt: skip
            (root / "speed" / shape / record["model"]).mkdir(parents=True)
            (root / "speed" / shape / record["model"] / "speed.json").write_text(json.dumps(record))
    report(root, tmp_path / "out", figures=True)
    claim = (tmp_path / "out" / "comparison.md").read_text().split("### (a)")[1].split("###")[0]
    assert "grows as D^1.00 for pixelcnn and as D^0.00 for gan" in claim
    assert "pixelcnn needs 3.0× the GAN's FLOPs per sample but 10200× its batch-1 time" in claim
    assert "1024 network evaluations against 1" in claim and "claim_a.png" in claim
    assert imread(tmp_path / "out" / "claim_a.png").ndim == 3


def test_columns_appear_only_where_a_run_measured_them(table: dict[str, dict[str, str]], tmp_path: Path) -> None:
    assert not any(h.startswith(("KL to truth", "modes")) for h in table["gan"])  # digits: no known density
    root = tmp_path / "toy"
    kl = Metric("kl_to_truth", 0.25, "nats", "estimate", 0.01, 100, "test", {"method": "kde"}, ("method",))
    modes = Metric("modes_covered", 8.0, "modes", "estimate", None, 2500, "samples", {"mode": "default"}, ("mode",))
    write_run_at(root / "gan" / "seed0", "gan", 0, [kl, modes])
    header, rows = main_table(group_runs(load_runs(root).runs)["digits"])
    cells = dict(zip(header, rows[0], strict=True))
    assert cells["KL to truth (nats)"] == "≈ 0.2500" and cells["modes"] == "8.000"
    assert len(rows) == 1  # a record without `source` is the model's KL, never a real-data floor
    # The KDE's floor on real draws goes in the data row, not in the model's cell.
    fields = {"method": "kde", "source": "data", "n_samples": 1000}
    floor = Metric("kl_to_truth", 0.02, "nats", "estimate", 0.01, 100, "test", fields, ("method", "source"))
    write_run_at(root / "gan" / "seed0", "gan", 0, [kl, floor, modes])
    header, rows = main_table(group_runs(load_runs(root).runs)["digits"])
    cells, data_row = dict(zip(header, rows[0], strict=True)), dict(zip(header, rows[1], strict=True))
    assert cells["KL to truth (nats)"] == "≈ 0.2500" and data_row["model"] == "data (held-out)"
    assert data_row["KL to truth (nats)"] == "0.02000 (n = 1000)"


def test_one_seeds_fid_shows_its_bootstrap_range_by_that_name(tmp_path: Path) -> None:
    # The record's `interval` is a resampled spread that sits above the value (repeated rows add bias): the cell
    # must call it a bootstrap range and the legend must say how to read it.
    with_range = fid(20.0)
    with_range.extra["interval"] = [21.5, 30.25]
    write_run(tmp_path, "gan", 0, RUNS["gan"][:4], [with_range])
    header, rows = main_table(group_runs(load_runs(tmp_path).runs)["digits"])
    assert dict(zip(header, rows[0], strict=True))["FID (domain)"] == "20.00 (bootstrap range [21.5, 30.2])"
    report(tmp_path, tmp_path / "out", figures=False)
    assert "read its width, not its position" in (tmp_path / "out" / "comparison.md").read_text()


def toy_run(
    root: Path, name: str, model: str, family: str, kl: float, config: dict, extra: list[Metric] = (), seed: int = 0
) -> None:
    """A finished toy-2D run with one KL-to-truth (and `extra` metrics) and the config its settings are read from."""
    run_dir = root / name
    rec = new_record(model=model, dataset="toy2d", seed=seed, config=config, device="cpu")
    rec["model_info"] = {"likelihood": "exact", "family": family, "parameters": 100, "latent_dim": 2}
    rec["train"] = {"steps": 10, "wall_time_s": 1.0, "stopped_by": "max_steps"}
    metrics = [Metric("kl_to_truth", kl, "nats", "estimate", None, 100, "test", {}, ()), *extra]
    rec["metrics"] = [m.to_dict() for m in metrics]
    save_record(rec, run_dir)
    (run_dir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML


def test_a_capacity_sweep_keeps_its_lines_apart_from_other_experiments_runs(tmp_path: Path) -> None:
    # A width sweep on ring8, beside a convergence run at one width (snapshots kept) on ring8 and on grid25: the
    # convergence runs are points, not lines, and must neither join the sweep's line nor make lines of their own.
    def config(width: int, mixture: str = "ring8", snapshots: bool = False) -> dict:
        return {"dataset": {"name": "toy2d", "mixture": mixture}, "model": {"name": "gan", "width": width},
                "train": {"keep_snapshots": snapshots}}  # fmt: skip

    for width, kl in ((8, 4.0), (32, 2.0), (128, 1.0)):
        toy_run(tmp_path, f"gan_w{width}", "gan", "adversarial", kl, config(width))
    toy_run(tmp_path, "gan_snap_ring8", "gan", "adversarial", 9.0, config(32, snapshots=True))
    toy_run(tmp_path, "gan_snap_grid25", "gan", "adversarial", 7.0, config(32, "grid25", snapshots=True))
    evidence = claims.Evidence(group_runs(load_runs(tmp_path).runs))
    assert claims.capacity_series(evidence) == {
        "gan on toy2d (mixture=ring8)": [(8.0, 4.0, None), (32.0, 2.0, None), (128.0, 1.0, None)]
    }


def test_the_capacity_claim_reads_a_samplers_kl_against_its_estimators_floor(tmp_path: Path) -> None:
    # GAN runs record their KDE's floor on true draws (0.02, 0.04 over two seeds); the VAE, scored by its bound,
    # records none. The floor is averaged over the runs that have it, named in the text and the verdict, and
    # never joins a model's line.
    fields = {"method": "kde", "source": "data", "n_samples": 1000}
    for width, kl in ((8, 4.0), (32, 2.0)):
        for seed, floor in enumerate((0.02, 0.04)):
            metric = Metric("kl_to_truth", floor, "nats", "estimate", 0.01, 100, "test", fields, ("method", "source"))
            config = {"dataset": {"name": "toy2d", "mixture": "ring8"}, "model": {"name": "gan", "width": width}}
            toy_run(tmp_path, f"gan_w{width}_{seed}", "gan", "adversarial", kl, config, [metric], seed)
        config = {"dataset": {"name": "toy2d", "mixture": "ring8"}, "model": {"name": "vae", "width": width}}
        toy_run(tmp_path, f"vae_w{width}", "vae", "variational", kl / 4, config)
    evidence = claims.Evidence(group_runs(load_runs(tmp_path).runs))
    assert claims.kl_floors(evidence) == {"toy2d": (pytest.approx(0.03), pytest.approx(0.011547, rel=1e-3), 4)}
    assert claims.capacity_series(evidence)["gan"] == [(8.0, 4.0, 0.0), (32.0, 2.0, 0.0)]
    answer = claims.bias_and_consistency(evidence)
    assert (
        "the same KDE on draws of the truth (the real-data floor" in answer.text
        and "0.0300 ± 0.012 on toy2d" in answer.text
    )
    assert "(gan, KL 2.00) comes no closer to the truth" in answer.verdict
    assert "its estimator's floor on true draws: 0.0300" in answer.verdict


def test_the_capacity_verdict_compares_within_a_mixture_and_prices_the_elbo(tmp_path: Path) -> None:
    # ring8: GAN 1.0, ELBO-trained VAE 0.8, IWAE-8 VAE 0.4, RealNVP 0.3; grid25: GAN 0.5, VAE 2.0. A verdict per
    # mixture (the grid25 GAN must not be set against the ring8 VAE), and the ELBO's cost beside the tighter
    # objective and the exact likelihood.
    def config(model: str, mixture: str, width: int, **extra: int) -> dict:
        return {"dataset": {"name": "toy2d", "mixture": mixture}, "model": {"name": model, "width": width, **extra}}

    runs = [
        ("gan", "adversarial", "ring8", {}, (2.0, 1.0)),
        ("vae", "variational", "ring8", {"train_k": 1}, (0.9, 0.8)),
        ("vae", "variational", "ring8", {"train_k": 8}, (0.5, 0.4)),
        ("realnvp", "flow", "ring8", {}, (0.6, 0.3)),
        ("gan", "adversarial", "grid25", {}, (0.7, 0.5)),
        ("vae", "variational", "grid25", {"train_k": 1}, (3, 2)),
    ]
    for model, family, mixture, extra, kls in runs:
        for width, kl in zip((8, 32), kls, strict=True):
            name = f"{mixture}_{model}{extra.get('train_k', '')}_w{width}"
            toy_run(tmp_path, name, model, family, kl, config(model, mixture, width, **extra))
    verdict = claims.bias_and_consistency(claims.Evidence(group_runs(load_runs(tmp_path).runs))).verdict
    ring8, grid25 = "toy2d (mixture=ring8)", "toy2d (mixture=grid25)"
    assert f"On {ring8}, at its best capacity the GAN (gan on {ring8}, KL 1.00) comes no closer" in verdict
    assert f"than the best VAE (vae, train_k=8 on {ring8}, 0.400)" in verdict
    assert (f"Training on the ELBO costs: its best KL is 0.800 against vae, train_k=8 on {ring8} 0.400 and "
            f"realnvp on {ring8} 0.300.") in verdict  # fmt: skip
    assert f"On {grid25}, at its best capacity the GAN (gan on {grid25}, KL 0.500) comes closer to" in verdict
    assert f"best VAE (vae on {grid25}, 2.00)" in verdict  # one objective on grid25: its line names none


def test_convergence_verdict_names_the_curves_that_lose_modes(tmp_path: Path) -> None:
    # Two seeds per loss on ring8: ns covers 2 -> 6 -> 8 modes (mean), hinge peaks at 5 and ends at 1 (collapse).
    coverage = {"ns": ([2, 6, 8], [2, 6, 8]), "hinge": ([4, 6, 2], [2, 4, 0])}
    for loss, seeds in coverage.items():
        for seed, counts in enumerate(seeds):
            name, fields = "modes_covered_over_training", ("step",)
            steps = zip((100, 200, 300), counts, strict=True)
            extra = [Metric(name, c, "modes", "estimate", None, 100, "test", {"step": s}, fields) for s, c in steps]
            config = {"dataset": {"name": "toy2d", "mixture": "ring8"}, "model": {"name": "gan", "loss": loss}}
            toy_run(tmp_path, f"{loss}{seed}", "gan", "adversarial", 1.0, config, extra, seed)
    answer = claims.convergence(claims.Evidence(group_runs(load_runs(tmp_path).runs)))
    hinge = "gan (loss=hinge) on toy2d: modes covered 100: 3.0, 200: 5.0, 300: 1.0 (fell from its peak 5.0)"
    assert hinge in answer.text
    assert answer.verdict.endswith("1 of 2 mode-coverage curves (means over seeds) end below their peak: "
                                   "gan (loss=hinge) on toy2d 5.0 → 1.0.")  # fmt: skip


def test_mode_changes_count_drops_and_hops_between_snapshots(tmp_path: Path) -> None:
    # Seed 0 covers {0, 1}, then {0, 2} (mode 1 dropped while mode 2 is gained: a hop), then {2} (mode 0 dropped:
    # a collapse); seed 1 holds {0} throughout. Per run: 2 and 0 drops, 1 and 0 hops.
    for seed, sets in enumerate(([[0, 1], [0, 2], [2]], [[0], [0], [0]])):
        fields = [{"step": step, "covered": c} for step, c in zip((1, 2, 3), sets, strict=True)]
        name = "modes_covered_over_training"
        extra = [
            Metric(name, len(f["covered"]), "modes", "estimate", None, 100, "samples", f, ("step",)) for f in fields
        ]
        toy_run(tmp_path, f"gan{seed}", "gan", "adversarial", 1.0, {"dataset": {"name": "toy2d"}}, extra, seed)
    evidence = claims.Evidence(group_runs(load_runs(tmp_path).runs))
    assert claims.mode_changes(evidence) == {"gan on toy2d": (1.0, 0.5, 2)}
    assert "gan on toy2d 1.0 dropped, 0.50 hops." in claims.convergence(evidence).verdict


def test_convergence_reads_kl_over_training_per_run_beside_its_floor_and_plots_gan_losses(tmp_path: Path) -> None:
    # Hinge on ring8, two seeds: seed 0 reaches KL 1.0 at step 200 and relapses to 1.5; seed 1 ends at its best.
    # Each run also records the KDE floor (source: data), at the end and at every snapshot: it must never enter
    # the model's curve (a mean with it would halve the KL), and the text and figure show it as the floor.
    for seed, kls in enumerate(([2.0, 1.0, 1.5], [2.0, 1.2, 1.2])):
        extra = [Metric("kl_to_truth", 0.02, "nats", "estimate", None, 100, "test", {"source": "data"}, ("source",))]
        for step, kl in zip((100, 200, 300), kls, strict=True):
            for source, value in (("model", kl), ("data", 0.0)):
                fields = {"step": step, "method": "kde", "source": source}
                extra.append(Metric("kl_to_truth_over_training", value, "nats", "estimate", None, 100, "test",
                                    fields, ("step", "method", "source")))  # fmt: skip
        config = {"dataset": {"name": "toy2d", "mixture": "ring8"}, "model": {"name": "gan", "loss": "hinge"}}
        toy_run(tmp_path, f"hinge{seed}", "gan", "adversarial", 1.0, config, extra, seed)
    # A GAN tracked by FID on digits, two seeds, its discriminator and generator losses in curve.csv.
    for seed in (0, 1):
        body = [fid(40.0), Metric("fid_over_training", 50.0, "–", "estimate", None, 10, "test", {"step": 3}, ("step",))]
        run_dir = tmp_path / "digits" / "gan" / f"seed{seed}"
        write_run_at(run_dir, "gan", seed, body)
        with open(run_dir / "curve.csv", "w", newline="") as f:
            f.write("step,g_loss,d_loss,grad_norm\n" + "".join(f"{s},{s + seed},{-s},\n" for s in (1, 2, 3)))
    evidence = claims.Evidence(group_runs(load_runs(tmp_path).runs))
    answer = claims.convergence(evidence)
    assert "gan on toy2d: KL to truth 2.00 at step 100, best 1.10 at 200, 1.35 at 300 (floor 0.020)" in (answer.text)
    assert answer.verdict.endswith(" 1 of 2 toy runs end more than 5% farther from the truth (KL) than at their "
                                   "best snapshot, the most gan on toy2d, seed 0: 1.00 nats at step "
                                   "200, 1.50 at the end.")  # fmt: skip
    losses = claims.adversarial_losses(evidence)
    assert list(losses["gan"]) == ["g_loss", "d_loss"]  # grad_norm is no loss, and logged at no step here
    assert losses["gan"]["g_loss"] == [(1.0, 1.5, pytest.approx(0.7071, abs=1e-4)), (2.0, 2.5, pytest.approx(0.7071,
                                        abs=1e-4)), (3.0, 3.5, pytest.approx(0.7071, abs=1e-4))]  # fmt: skip
    assert figures.claim_convergence_figure(evidence) is not None


def test_chain_series_leave_out_a_default_mode_that_a_named_mode_duplicates(tmp_path: Path) -> None:
    # The GSN's default sampler is its burn100 (101 evaluations each): one point at 101, burn100's (FID 60), not
    # two; a default mode with an evaluation count of its own stays.
    body = [fid(50.0), fid(80.0, mode="burn10"), fid(60.0, mode="burn100")]
    write_run_at(tmp_path / "gsn" / "seed0", "gsn", 0, body, ("markov_chain", "none", None, GSN_MODES))
    record_path = tmp_path / "gsn" / "seed0" / "record.json"
    rec = json.loads(record_path.read_text())
    rec["model_info"]["network_evaluations"] = {"default": 101, "burn10": 11, "burn100": 101}
    record_path.write_text(json.dumps(rec))
    (group,) = group_runs(load_runs(tmp_path).runs)["digits"]
    assert claims.mode_series(group, "fid") == [(11.0, 80.0, None), (101.0, 60.0, None)]
    rec["model_info"]["network_evaluations"]["default"] = 201
    record_path.write_text(json.dumps(rec))
    (group,) = group_runs(load_runs(tmp_path).runs)["digits"]
    assert claims.mode_series(group, "fid") == [(11.0, 80.0, None), (101.0, 60.0, None), (201.0, 50.0, None)]
