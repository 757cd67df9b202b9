"""Hydra multirun sweeps (experiment=compare) on tiny configs, and the experiment/launcher configs themselves.

A joblib sweep and a submitit_local sweep each write one record per job into <sweep>/<dataset>/<model>/seed<seed>;
a job that fails (NaN loss, a corrupt checkpoint, a model that refuses the data) writes a `failed` record naming
its stage while the other jobs finish, the report says so, and the sweep (and `make compare`) exits non-zero.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from genbench.cli import CONF_DIR, main
from genbench.report.comparison import main as report_main
from genbench.report.records import group_runs, load_runs
from genbench.report.tables import main_table
from genbench.results import load_record
from genbench.train import CHECKPOINT_NAME

REPO = Path(__file__).resolve().parents[1]

# Tiny jobs: two training steps and only the cheap metrics (the sweep, not the metrics, is under test).
TINY = ["dataset=digits", "train.max_steps=2", "train.batch_size=16", "eval=fast", "eval.fid.enabled=false"]
TINY += ["eval.likelihood.ais.enabled=false", "eval.likelihood.parzen.enabled=false"]
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
MODELS = {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}


def run_sweep(sweep_dir: Path, launcher: str, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the CLI hands its argv to Hydra through sys.argv
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # jobs in other processes: one thread each on a shared CPU
    args = ["bench", "-m", "experiment=compare", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}"]
    return main([*args, *TINY, *overrides])


@pytest.mark.slow  # separate job processes each import torch: ~20 s of CPU per sweep
def test_joblib_sweep_writes_one_record_per_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_sweep(tmp_path, "joblib", ["model=gan,vae", "seed=0", "hydra.launcher.n_jobs=2"], monkeypatch) == 0
    runs = load_runs(tmp_path).runs
    assert sorted(r.path.relative_to(tmp_path).as_posix() for r in runs) == ["digits/gan/seed0", "digits/vae/seed0"]
    assert all(r.ok and r.record["train"]["steps"] == 2 for r in runs)
    assert not [p for p in tmp_path.iterdir() if p.name.isdigit()]  # no empty numbered Hydra job folders
    assert report_main([str(tmp_path), "--no-figures"]) == 0
    assert "| gan | 1 |" in (tmp_path / "comparison.md").read_text()


@pytest.mark.slow
def test_submitit_local_sweep_survives_a_bad_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two VAE jobs that differ only in learning rate; lr=1e30 turns the loss into NaN at once.
    layout = ["hydra.sweep.subdir=lr${model.lr}", "out_dir=${hydra:sweep.dir}/lr${model.lr}"]
    assert run_sweep(tmp_path, "submitit_local", ["model=vae", "model.lr=1e30,0.001", *layout], monkeypatch) == 1
    records = {r.path.name: r.record for r in load_runs(tmp_path).runs}
    assert set(records) == {"lr0.001", "lr1e+30"}
    assert records["lr0.001"]["status"] == "ok" and records["lr0.001"]["metrics"]
    assert records["lr1e+30"]["status"] == "failed" and "non-finite" in records["lr1e+30"]["error"]
    assert records["lr1e+30"]["stage"] == "training"
    header, rows = main_table(group_runs(load_runs(tmp_path).runs)["digits"])
    # the two learning rates are two configurations: a row each, the failed one saying so
    assert {tuple(r[:2]) for r in rows[:2]} == {("vae (lr=0.001)", "1"), ("vae (lr=1e+30)", "0 (1 failed)")}


# In-process jobs (Hydra's basic launcher), on a stand-in model: the sweep's exit code, not the models, is under test.
DUMMY = ["hydra/launcher=basic", "model._target_=dummy_models.GaussianModel", "dataset=toy2d", "train.max_steps=3"]
DUMMY += TINY[2:]


def test_a_failed_job_fails_the_sweep_after_every_job_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    layout = ["out_dir=${hydra:sweep.dir}/nan${model.nan_at_step}", f"hydra.sweep.dir={tmp_path}"]
    # The first job turns NaN at step 2; the second never does, and still runs.
    assert main(["bench", "-m", *DUMMY, "+model.nan_at_step=2,100", *layout]) == 1
    assert load_record(tmp_path / "nan2")["stage"] == "training"
    assert load_record(tmp_path / "nan100")["status"] == "ok"
    err = capsys.readouterr().err
    assert "genbench bench: error: non-finite training scalars" in err
    assert err.strip().endswith(
        "genbench bench: error: a sweep job failed (each failed job said why above, and in its record.json)"
    )


def test_a_job_refused_before_training_leaves_a_failed_record_and_fails_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    (tmp_path / "seed1").mkdir(parents=True)
    (tmp_path / "seed1" / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")  # corrupt, in job 1's directory
    layout = ["out_dir=${hydra:sweep.dir}/seed${seed}", f"hydra.sweep.dir={tmp_path}"]
    assert main(["bench", "-m", *DUMMY, "seed=0,1", *layout]) == 1
    failed = load_record(tmp_path / "seed1")
    assert (failed["status"], failed["stage"], failed["seed"]) == ("failed", "checkpoint", 1)
    assert "cannot load checkpoint" in failed["error"]
    assert load_record(tmp_path / "seed0")["status"] == "ok"


@pytest.mark.slow  # `make compare` runs two processes (the sweep, the report), each importing torch
def test_make_compare_with_a_failing_job_writes_the_report_and_exits_nonzero(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    bin_dir = tmp_path / "bin"  # `genbench` from this checkout, with this interpreter (no install)
    bin_dir.mkdir()
    shim = bin_dir / "genbench"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH={REPO}:{REPO / "tests"} exec {sys.executable} -m genbench.cli "$@"\n')
    shim.chmod(0o755)
    stamp = tmp_path / "stamp"
    stamp.touch()  # newer than pyproject.toml: `install` has nothing to do
    sweep = tmp_path / "sweep"
    # pixelcnn refuses 2-D points (its job fails at stage `model`); the GAN job trains.
    args = " ".join(
        ["train.max_steps=2", "train.batch_size=16", *TINY[3:], "eval.likelihood.kl_to_truth.n_samples=200"]
    )
    make = ["make", "-s", "compare", f"BIN={bin_dir}", f"STAMP={stamp}", "LAUNCHER=basic", "DATASET=toy2d"]
    make += ["MODELS=gan,pixelcnn", "SEEDS=0", f"SWEEP_DIR={sweep}", f"ARGS={args}"]
    done = subprocess.run(make, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0, done.stdout + done.stderr
    assert load_record(sweep / "toy2d" / "pixelcnn" / "seed0")["stage"] == "model"
    assert load_record(sweep / "toy2d" / "gan" / "seed0")["status"] == "ok"
    assert (sweep / "comparison.md").exists(), done.stdout + done.stderr  # the report ran after the sweep


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    # parallel jobs, except where an experiment times (the basic launcher runs its jobs one at a time)
    assert cfg.hydra.launcher._target_.endswith(("JoblibLauncher", "BasicLauncher"))
    assert OmegaConf.select(cfg, "hydra.sweep.subdir", throw_on_missing=False) is not None
    params = cfg.hydra.sweeper.params or {}
    models = str(params.get("model", "glob(*)"))
    # glob(*) is Hydra's "every option of the group"; an explicit list must name existing model configs.
    assert models == "glob(*)" or set(models.split(",")) <= MODELS, f"experiment {name}: unknown model in {models}"
    # A swept model key must exist in every model it sweeps: a sweep inherited from another experiment keeps the
    # parent's keys (claims_training_vae once swept the GAN's model.loss and failed at launch).
    swept = sorted(MODELS) if models == "glob(*)" else models.split(",") if "model" in params else [cfg.model.name]
    for key in (str(k).removeprefix("model.") for k in params if str(k).startswith("model.")):
        for model in swept:
            model_keys = OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml")
            assert key in model_keys, f"experiment {name}: {model} has no {key}"


def test_slurm_preset_composes_on_submitit_slurm() -> None:
    overrides = ["experiment=compare", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
