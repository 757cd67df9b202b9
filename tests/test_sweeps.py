"""Hydra multirun sweeps (experiment=compare) on tiny configs, and the experiment/launcher configs themselves.

A joblib sweep and a submitit_local sweep each write one record per job into <sweep>/<dataset>/<model>/seed<seed>;
a job that fails (NaN loss) writes a `failed` record while the other job finishes, and the report says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from genbench.cli import CONF_DIR, main
from genbench.report.comparison import main as report_main
from genbench.report.records import group_runs, load_runs
from genbench.report.tables import main_table

# Tiny jobs: two training steps and only the cheap metrics (the sweep, not the metrics, is under test).
TINY = ["dataset=digits", "train.max_steps=2", "train.batch_size=16", "eval=fast", "eval.fid.enabled=false"]
TINY += ["eval.likelihood.ais.enabled=false", "eval.likelihood.parzen.enabled=false"]
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
MODELS = {p.stem for p in (CONF_DIR / "model").glob("*.yaml")}


def run_sweep(sweep_dir: Path, launcher: str, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the CLI hands its argv to Hydra through sys.argv
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # jobs in other processes: one thread each on a shared CPU
    args = ["bench", "-m", "experiment=compare", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}"]
    assert main([*args, *TINY, *overrides]) == 0


@pytest.mark.slow  # separate job processes each import torch: ~20 s of CPU per sweep
def test_joblib_sweep_writes_one_record_per_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_sweep(tmp_path, "joblib", ["model=gan,vae", "seed=0", "hydra.launcher.n_jobs=2"], monkeypatch)
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
    run_sweep(tmp_path, "submitit_local", ["model=vae", "model.lr=0.001,1e30", *layout], monkeypatch)
    records = {r.path.name: r.record for r in load_runs(tmp_path).runs}
    assert set(records) == {"lr0.001", "lr1e+30"}
    assert records["lr0.001"]["status"] == "ok" and records["lr0.001"]["metrics"]
    assert records["lr1e+30"]["status"] == "failed" and "non-finite" in records["lr1e+30"]["error"]
    header, rows = main_table(group_runs(load_runs(tmp_path).runs)["digits"])
    assert rows[0][:2] == ["vae", "1 (1 failed)"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert OmegaConf.select(cfg, "hydra.sweep.subdir", throw_on_missing=False) is not None
    params = cfg.hydra.sweeper.params or {}
    models = str(params.get("model", "glob(*)"))
    # glob(*) is Hydra's "every option of the group"; an explicit list must name existing model configs.
    assert models == "glob(*)" or set(models.split(",")) <= MODELS, f"experiment {name}: unknown model in {models}"


def test_slurm_preset_composes_on_submitit_slurm() -> None:
    overrides = ["experiment=compare", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
