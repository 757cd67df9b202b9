"""Issue 18 as a user meets it on the command line: bad values, files and folders get exactly one line on stderr
and a non-zero exit; a job that fails leaves a record naming its stage; budgets of resumed runs stay consistent;
`genbench eval` of a failed run is refused. (Sweeps and `make compare` are in test_sweeps.py.)"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from test_data import bad_npz_files

from genbench import pipeline
from genbench.cli import main
from genbench.config_schema import validate_config
from genbench.errors import GenbenchError
from genbench.pipeline import CONFIG_NAME, bench, evaluate_run
from genbench.results import load_record
from genbench.train import CHECKPOINT_FORMAT, CHECKPOINT_NAME

Compose = Callable[..., DictConfig]
TINY = ["train.max_steps=2", "train.batch_size=16", "eval=fast", "eval.fid.enabled=false"]
TINY += ["eval.likelihood.ais.enabled=false", "eval.likelihood.parzen.enabled=false"]
DUMMY = ["model._target_=dummy_models.GaussianModel", "dataset=toy2d", *TINY]


def one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return lines[0]


# ----------------------------------------------------------------------------- item 5 (and 2): bad values

# (override, exit code, what the line must say). Code 2: refused while Hydra composes (a value of the wrong
# type), no job starts. Code 1: refused by the job's first stage (`config`), which writes a failed record.
BAD_VALUES = [
    ("train.max_steps=abc", 2, "train.max_steps: Value 'abc' of type 'str' could not be converted to Integer"),
    ("train.max_steps=2.5", 2, "train.max_steps: Value '2.5' of type 'float' could not be converted to Integer"),
    ("seed=1.5", 2, "seed: Value '1.5' of type 'float' could not be converted to Integer"),
    ("modle=vae", 2, "unknown key 'modle'; accepted: dataset, model, train, eval, speed, seed, out_dir, run_dir"),
    ("train.max_steps=0", 1, "train.max_steps=0: accepted: an integer > 0"),
    ("train.max_steps=-5", 1, "train.max_steps=-5: accepted: an integer > 0"),
    ("train.batch_size=0", 1, "train.batch_size=0: accepted: an integer > 0"),
    ("train.batch_size=-4", 1, "train.batch_size=-4: accepted: an integer > 0"),
    ("train.checkpoint_every=0", 1, "train.checkpoint_every=0: accepted: an integer > 0"),
    ("train.log_every=0", 1, "train.log_every=0: accepted: an integer > 0"),
    ("train.max_minutes=-1", 1, "train.max_minutes=-1.0: accepted: a number > 0, or null for none"),
    ("train.device=tpu", 1, "train.device='tpu': accepted: auto, cpu, cuda, cuda:N"),
    ("model.lr=-1", 1, "model.lr=-1: accepted: a finite number > 0"),
    ("model.latent_dim=0", 1, "model.latent_dim=0: accepted: an integer >= 1"),
    ("model.latent_dim=abc", 1, "model.latent_dim='abc': accepted: an integer"),
    ("model.ema_decay=abc", 1, "model.ema_decay='abc': accepted: a number or null"),
    ("+modle=vae", 1, "unknown key 'modle' (no stage reads it); accepted: dataset, model, train"),
    ("+train.foo=1", 1, "unknown key 'train.foo' (no stage reads it); accepted: batch_size, max_steps"),
    ("+dataset.mixtur=grid25", 1, "unknown key 'dataset.mixtur' (no stage reads it); accepted: _target_, valid"),
    ("+model.train_k=4", 1, "unknown key 'model.train_k': gan (models.gan.GAN) has no such argument; accepted"),
    ("dataset.mixture=ring9", 1, "dataset.mixture='ring9': accepted: ring8, grid25"),
    ("+eval.fid.n_gne=10", 1, "unknown key 'eval.fid.n_gne' (no stage reads it); accepted: enabled, modes"),
    ("+eval.bogus=1", 1, "unknown key 'eval.bogus' (no stage reads it); accepted: name, seed"),
    ("eval.fid.kid_precision=float16", 1, "eval.fid.kid_precision='float16' is not a KID kernel precision; accepted"),
]


@pytest.mark.parametrize(("override", "code", "says"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_a_bad_value_gets_one_line_and_a_nonzero_exit(
    override: str, code: int, says: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    dataset = ["dataset=toy2d"] if "dataset." in override else []
    assert main(["bench", *dataset, override, f"out_dir={out}"]) == code
    line = one_line(capsys)
    assert says in line, line
    if code == 1:  # the job started, and its record says it stopped at its config, with nothing trained
        record = load_record(out)
        assert (record["status"], record["stage"], record["train"]["steps"]) == ("failed", "config", 0)
        assert says in record["error"] and not (out / CHECKPOINT_NAME).exists()
    else:
        assert not out.exists()


def test_a_cuda_device_that_is_not_there_gets_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not torch.cuda.is_available():  # a machine with one GPU, as far as genbench can tell
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    count = torch.cuda.device_count()
    assert main(["bench", f"train.device=cuda:{count}", f"out_dir={tmp_path / 'run'}"]) == 1
    assert f"train.device='cuda:{count}' but this machine has {count} CUDA device(s)" in one_line(capsys)
    record = load_record(tmp_path / "run")
    assert record["stage"] == "config" and record["device"] == f"not resolved: train.device=cuda:{count}"


def test_a_config_built_without_the_schema_is_checked_the_same_way(compose: Compose) -> None:
    plain = OmegaConf.create(OmegaConf.to_container(compose([]), resolve=True))  # no dataclass types left
    assert validate_config(plain).max_steps == 3000
    plain.train.batch_size = 0
    with pytest.raises(GenbenchError, match=r"train.batch_size=0: accepted: an integer > 0"):
        validate_config(plain)
    plain.train.batch_size, plain.train.foo = 64, 1
    with pytest.raises(GenbenchError, match=r"unknown key 'train.foo'"):
        validate_config(plain)


def test_hydras_hint_for_a_misspelled_key_no_longer_trains_another_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Hydra answers `modle=vae` with "To append to your config use +modle=vae"; that is refused too.
    assert main(["bench", "+modle=vae", f"out_dir={tmp_path / 'run'}"]) == 1
    assert "unknown key 'modle'" in one_line(capsys)
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()


@pytest.mark.parametrize("kind", ["text", "npy", "empty", "object"])
def test_an_npz_that_holds_no_images_gets_one_line(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = bad_npz_files(tmp_path)[kind]
    out = tmp_path / "run"
    assert main(["bench", "dataset=npz", f"dataset.path={path}", f"out_dir={out}"]) == 1
    assert str(path) in one_line(capsys)
    assert load_record(out)["stage"] == "data"


def test_a_checkpoint_with_only_the_format_key_gets_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT}, out / CHECKPOINT_NAME)
    assert main(["bench", *TINY, f"out_dir={out}"]) == 1
    assert "is an incomplete genbench checkpoint (lacks step, wall_time_s, model_state" in one_line(capsys)
    assert load_record(out)["stage"] == "checkpoint"


# ----------------------------------------------------------------------------- item 5: the output folder


def deny_writes_under(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `folder` read-only: chmod, and (as root ignores modes) refuse creating anything under it too."""
    folder.chmod(0o555)
    real_open, real_mkdir = os.open, os.mkdir

    def check(path: object) -> None:
        if Path(os.fsdecode(path)).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def fake_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            check(path)
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path: object, *args: object, **kwargs: object) -> None:
        check(path)
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def full_disk_under(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text write under `folder` fails as on a full disk (the probe of an empty file still succeeds)."""
    real = Path.write_text

    def write_text(self: Path, *args: object, **kwargs: object) -> int:
        if self.resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


OUT_DIRS = {
    "read-only": ("ro/run", "out_dir {out}: cannot write there (Permission denied)"),
    "a file": ("file", "out_dir {out}: {out} is a file, not a directory"),
    "under a file": ("file/run", "out_dir {out}: {parent} is a file, not a directory"),
    "too long": ("x" * 300, "cannot write there (File name too long)"),
    "on a full disk": ("full/run", "cannot write {out}/config.yaml: No space left on device"),
}


@pytest.mark.parametrize("case", OUT_DIRS)
def test_an_unwritable_out_dir_gets_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative, says = OUT_DIRS[case]
    out = tmp_path / relative
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "ro").mkdir()
    if case == "read-only":
        deny_writes_under(tmp_path / "ro", monkeypatch)
    if case == "on a full disk":
        full_disk_under(tmp_path / "full", monkeypatch)
    try:
        assert main(["bench", *DUMMY, f"out_dir={out}"]) == 1
    finally:
        (tmp_path / "ro").chmod(0o755)
    line = one_line(capsys)
    assert says.format(out=out, parent=tmp_path / "file") in line, line
    assert "no failed record was written" in line  # and it says the record could not be written either


# ----------------------------------------------------------------------------- item 2: budgets of a resumed run


def test_a_resumed_run_trains_on_or_refuses_to_shrink_and_record_and_config_agree(
    compose: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    steps = ["train.checkpoint_every=2", *DUMMY]
    bench(compose([*steps, "train.max_steps=4"]))

    def asked(path: Path) -> int:
        return OmegaConf.load(path / CONFIG_NAME).train.max_steps

    with pytest.raises(GenbenchError, match="train.max_steps=2 is below the 4 steps already trained"):
        bench(compose([*steps, "train.max_steps=2"]))
    record = load_record(run)  # refused before anything changed: the finished run is as it was
    assert record["status"] == "ok" and record["train"]["steps"] == 4 == asked(run)
    record = bench(compose([*steps, "train.max_steps=6"]))
    assert record["train"]["steps"] == 6 == asked(run) and record["train"]["resumed_from"] == 4


def test_a_failure_before_training_leaves_a_finished_runs_record_as_it_was(compose: Compose, tmp_path: Path) -> None:
    bench(compose(DUMMY))
    before = (tmp_path / "run" / "record.json").read_text()
    with pytest.raises(GenbenchError, match=r"train.max_steps=0") as caught:
        bench(compose([*DUMMY, "train.max_steps=0"]))
    assert "(a finished run, left as it was) does not record this failure" in caught.value.__notes__[0]
    assert (tmp_path / "run" / "record.json").read_text() == before


# ----------------------------------------------------------------------------- item 8: steps and genbench eval


def test_a_failed_record_says_where_training_stopped(compose: Compose, tmp_path: Path) -> None:
    cfg = compose([*DUMMY, "+model.nan_at_step=5", "train.checkpoint_every=2", "train.max_steps=10"])
    with pytest.raises(GenbenchError, match="non-finite"):
        bench(cfg)
    record = load_record(tmp_path / "run")
    assert record["stage"] == "training" and record["train"]["stopped_by"] == "error"
    assert record["train"]["steps"] == 5 and record["train"]["checkpoint_step"] == 4
    cfg = compose([*DUMMY, "+model.crash_at_step=3", "train.max_steps=10"], out_dir=tmp_path / "crash")
    with pytest.raises(RuntimeError):
        bench(cfg)
    record = load_record(tmp_path / "crash")  # steps 1 and 2 returned; step 3 raised
    assert record["stage"] == "training" and record["train"]["steps"] == 2


def test_eval_of_a_run_that_failed_in_training_exits_nonzero_and_writes_nothing(
    compose: Compose, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(GenbenchError):
        bench(compose([*DUMMY, "+model.nan_at_step=3", "train.checkpoint_every=2", "train.max_steps=10"]))
    before = (tmp_path / "run" / "record.json").read_text()
    capsys.readouterr()
    assert main(["eval", f"run_dir={tmp_path / 'run'}", "eval=fast"]) == 1
    assert "failed at training" in one_line(capsys)
    assert (tmp_path / "run" / "record.json").read_text() == before


def test_eval_of_a_run_that_failed_in_evaluation_marks_it_ok_when_it_succeeds(
    compose: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> list:
        raise RuntimeError("simulated evaluation failure")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "evaluate_model", broken)
        with pytest.raises(RuntimeError):
            bench(compose(DUMMY))
    record = load_record(tmp_path / "run")
    assert (record["status"], record["stage"], record["train"]["steps"]) == ("failed", "evaluation", 2)
    record = evaluate_run(compose([f"run_dir={tmp_path / 'run'}", *TINY]))
    assert record["status"] == "ok" and record["metrics"] and "stage" not in load_record(tmp_path / "run")
    monkeypatch.setattr(pipeline, "evaluate_model", broken)
    with pytest.raises(RuntimeError):
        evaluate_run(compose([f"run_dir={tmp_path / 'run'}", *TINY]))
    record = load_record(tmp_path / "run")  # a failed evaluation leaves no metrics of the old one
    assert (record["status"], record["stage"], record["metrics"]) == ("failed", "evaluation", [])


def test_each_stage_before_training_leaves_a_record(compose: Compose, tmp_path: Path) -> None:
    cases = {
        "config": ["train.max_steps=0"],
        "data": ["dataset=npz", f"dataset.path={tmp_path / 'missing.npz'}"],
        "model": ["model=pixelcnn", "dataset=toy2d"],
        "checkpoint": [],
    }
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    for stage, overrides in cases.items():
        with pytest.raises(GenbenchError):
            bench(compose([*TINY, *overrides], out_dir=tmp_path / stage))
        record = load_record(tmp_path / stage)
        assert (record["status"], record["stage"]) == ("failed", stage), record
        assert OmegaConf.load(tmp_path / stage / CONFIG_NAME).train.max_steps == (0 if stage == "config" else 2)
