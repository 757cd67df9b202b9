"""End to end: `genbench bench` / `genbench eval` on tiny configs, for every model yaml, and bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from genbench.cli import CONF_DIR, main
from genbench.errors import GenbenchError
from genbench.pipeline import CONFIG_NAME, SAMPLES_NAME, bench, evaluate_run, load_run
from genbench.report.summary import run_summary
from genbench.results import find_metric, load_record
from genbench.train import CHECKPOINT_NAME

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
TINY = ["train.max_steps=2", "train.batch_size=16", "eval=fast"]
# Every model's whole evaluation, kept small: a few test examples, the default sampling mode's quality only, one
# timed call per mode (a 1,000-step diffusion sampler or bound costs seconds per call on a CPU).
EVERY_MODEL = [
    *TINY,
    "eval.likelihood.n_test=8",
    "eval.fid.modes=default",
    "eval.speed.budget_s=0",
    "eval.speed.n=2",
    "eval.speed.warmup=0",
]
Compose = Callable[..., DictConfig]


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_benches_on_digits(model: str, compose: Compose, tmp_path: Path) -> None:
    record = bench(compose([f"model={model}", *EVERY_MODEL]))
    run_dir = tmp_path / "run"
    assert record["status"] == "ok" and record["train"]["steps"] == 2
    assert load_record(run_dir)["model"] == model
    for name in (CONFIG_NAME, SAMPLES_NAME, CHECKPOINT_NAME, "curve.csv"):
        assert (run_dir / name).exists(), name
    assert find_metric(record, "sample_throughput") is not None
    nll = find_metric(record, "nll_bpd")
    kind = record["model_info"]["likelihood"]
    expected = {"exact": "exact", "lower_bound": "lower_bound", "estimate": "estimate"}.get(kind)
    if record["model_info"]["data_variant"] == "dequantized":
        expected = "lower_bound"  # an exact density of dequantized data only bounds the discrete likelihood
    if expected is not None:  # models that can give a likelihood must give one of the declared kind
        assert nll is not None and nll["kind"] == expected, nll
        data = "binarized" if record["model_info"]["data_variant"] == "binarized" else "discrete"
        assert nll["data"] == data and nll["variant"] == {"method": nll["method"], "data": data}


def test_cli_bench_toy2d_then_eval_without_retraining(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "vae"
    assert main(["bench", "model=vae", "dataset=toy2d", *TINY, f"out_dir={out}"]) == 0
    record = load_record(out)
    assert record["data"]["levels"] is None
    assert find_metric(record, "nll_nats", method="elbo")["kind"] == "lower_bound"
    assert find_metric(record, "nll_bpd") is None  # bits/dim make no sense for continuous toy data
    mtime = (out / CHECKPOINT_NAME).stat().st_mtime_ns
    assert main(["eval", f"run_dir={out}", "eval=fast", "eval.likelihood.iwae_k=[16]"]) == 0
    record = load_record(out)
    assert find_metric(record, "nll_nats", method="iwae-16") is not None
    assert (out / CHECKPOINT_NAME).stat().st_mtime_ns == mtime  # no retraining


def test_bench_resumes_and_ends_with_the_asked_step_count(
    compose: Compose, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = ["model=gan", "dataset=toy2d", "eval=fast", "train.checkpoint_every=2"]
    bench(compose([*overrides, "train.max_steps=4"]))
    first = capsys.readouterr().out
    assert "gan on toy2d, seed 0: ok" in first and "trained 4 steps" in first and "resumed" not in first
    assert f"record: {tmp_path / 'run' / 'record.json'}" in first and "samples/s" in first
    caplog.set_level("INFO", logger="genbench.train")
    record = bench(compose([*overrides, "train.max_steps=6"]))
    assert record["train"]["steps"] == 6 and record["train"]["resumed_from"] == 4
    assert f"resuming from step 4 (checkpoint {tmp_path / 'run' / CHECKPOINT_NAME})" in caplog.text
    assert "trained 6 steps" in capsys.readouterr().out and "resumed from step 4" in run_summary(
        record, tmp_path / "run"
    )
    model, data, _ = load_run(tmp_path / "run")
    assert data.spec.name == "toy2d" and model.latent_dim == 32


def test_nan_loss_writes_a_failed_record_and_keeps_the_checkpoint(compose: Compose, tmp_path: Path) -> None:
    cfg = compose(
        ["model._target_=dummy_models.GaussianModel", "+model.nan_at_step=3", "train.checkpoint_every=2", *TINY[2:]]
    )
    cfg.train.max_steps = 10
    with pytest.raises(GenbenchError, match="non-finite"):
        bench(cfg)
    record = load_record(tmp_path / "run")
    assert record["status"] == "failed" and "step 3" in record["error"]
    assert (tmp_path / "run" / CHECKPOINT_NAME).exists()


def test_any_training_error_writes_a_failed_record(compose: Compose, tmp_path: Path) -> None:
    cfg = compose(["model._target_=dummy_models.GaussianModel", "+model.crash_at_step=2", *TINY[2:]])
    with pytest.raises(RuntimeError, match="simulated"):
        bench(cfg)
    record = load_record(tmp_path / "run")
    assert record["status"] == "failed" and record["error"] == "RuntimeError: simulated library failure"


def test_unknown_choices_get_one_line_and_nonzero_exit(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["bench", "model=stylegan9", f"out_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown model 'stylegan9'; accepted: " in err and "gan" in err
    assert main(["bench", "dataset=imagenet"]) == 2
    assert main(["frobnicate"]) == 2
    assert not (tmp_path / "x").exists()


def test_bad_loss_and_impossible_shape_fail_before_training_with_a_record(compose: Compose, tmp_path: Path) -> None:
    with pytest.raises(GenbenchError, match="unknown GAN loss 'lsgan'; accepted: ns, hinge, wgan-gp"):
        bench(compose(["model.loss=lsgan"]))
    assert load_record(tmp_path / "run")["stage"] == "model"
    images = tmp_path / "odd.npz"
    np.savez(images, x=np.zeros((10, 5, 7), dtype=np.uint8))
    with pytest.raises(GenbenchError, match=r"cannot build model 'gan'.*square"):
        bench(compose(["dataset=npz", f"dataset.path={images}"]))
    record = load_record(tmp_path / "run")
    assert record["status"] == "failed" and record["stage"] == "model" and "square" in record["error"]
    assert record["dataset"] == "npz" and record["train"]["steps"] == 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CONFIG_NAME, "record.json"]  # nothing trained


def test_a_different_run_in_out_dir_is_not_overwritten(compose: Compose) -> None:
    bench(compose(["model=gan", "dataset=toy2d", *TINY]))
    with pytest.raises(GenbenchError, match="holds a checkpoint of a different run"):
        bench(compose(["model=gan", "dataset=toy2d", "seed=5", *TINY]))


def test_eval_needs_a_run_dir(compose: Compose, tmp_path: Path) -> None:
    with pytest.raises(GenbenchError, match="needs run_dir"):
        evaluate_run(compose([]))
    with pytest.raises(GenbenchError, match="not a finished run directory"):
        evaluate_run(compose([f"run_dir={tmp_path}"]))
