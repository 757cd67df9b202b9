"""The run record: schema round-trip, validation messages, failed records, atomic writes (their mode, the
debris of a killed writer, full disks), no fake numbers."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from genbench.errors import GenbenchError
from genbench.results import (
    Metric,
    atomic_write,
    atomic_write_text,
    ensure_writable_dir,
    error_message,
    find_metric,
    load_record,
    mark_failed,
    mark_ok,
    new_record,
    save_record,
)


def make_record() -> dict:
    record = new_record(model="vae", dataset="digits", seed=2, config={"a": 1}, device="cpu")
    record["metrics"] = [
        Metric("nll_bpd", 1.25, "bits/dim", "lower_bound", 0.01, 297, "test", {"method": "elbo"}).to_dict(),
        Metric("fid", float("nan"), "-", "estimate", None, 100, "test", {"features": "domain"}).to_dict(),
    ]
    return record


def test_round_trip_and_lookup(tmp_path: Path) -> None:
    record = make_record()
    save_record(record, tmp_path)
    loaded = load_record(tmp_path)
    assert loaded["seed"] == 2 and loaded["packages"]["torch"] and loaded["config_hash"] == record["config_hash"]
    assert find_metric(loaded, "nll_bpd", method="elbo")["value"] == 1.25
    assert find_metric(loaded, "nll_bpd", method="iwae-100") is None
    assert find_metric(loaded, "fid")["value"] is None  # NaN is written as null, never as a number
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left behind


def test_config_hash_is_order_independent() -> None:
    a = new_record(model="m", dataset="d", seed=0, config={"x": 1, "y": {"z": 2}}, device="cpu")
    b = new_record(model="m", dataset="d", seed=0, config={"y": {"z": 2}, "x": 1}, device="cpu")
    c = new_record(model="m", dataset="d", seed=0, config={"y": {"z": 3}, "x": 1}, device="cpu")
    assert a["config_hash"] == b["config_hash"] != c["config_hash"]


def test_validation_names_what_is_wrong(tmp_path: Path) -> None:
    record = make_record()
    del record["git_commit"]
    (tmp_path / "record.json").write_text(json.dumps(record))
    with pytest.raises(GenbenchError, match=r"missing fields \['git_commit'\]"):
        load_record(tmp_path)
    record = make_record()
    record["metrics"][0]["kind"] = "guess"
    with pytest.raises(GenbenchError, match="kind 'guess'"):
        save_record(record, tmp_path)
    with pytest.raises(ValueError, match="unknown kind"):
        Metric("fid", 1.0, "-", "exactish")
    (tmp_path / "record.json").write_text("{ truncated")
    with pytest.raises(GenbenchError, match="cannot read run record"):
        load_record(tmp_path)


# ----------------------------------------------------------------------------- writes: mode, debris, full disks


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_umasks_mode(umask: int, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "shared" / "stats.json", "{}")
        save_record(make_record(), tmp_path)
    finally:
        os.umask(old)
    for path in (tmp_path / "shared" / "stats.json", tmp_path / "record.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, oct(path.stat().st_mode)


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    # A writer that has created its temporary and is still writing when kill -9 arrives.
    script = (
        "import sys, time; from pathlib import Path; from genbench.results import atomic_write;"
        "atomic_write(Path(sys.argv[1]), lambda tmp: (tmp.write_bytes(b'half'), print('ready', flush=True),"
        " time.sleep(60)))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    live_temp = tmp_path / f".checkpoint.pt.{socket.gethostname()}-{os.getpid()}.0123abcd.pt"
    live_temp.write_bytes(b"another writer, alive: this process")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    debris = [p for p in tmp_path.iterdir() if p != live_temp]
    assert len(debris) == 1 and debris[0].name.startswith(".checkpoint.pt.")
    atomic_write_text(target, "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live_temp.name, "checkpoint.pt"])
    assert target.read_text() == "whole"


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(GenbenchError, match=r"^cannot write .*record.json: No space left on device$"):
        save_record(make_record(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_writers_own_errors_pass_through(tmp_path: Path) -> None:
    def refused(tmp: Path) -> None:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")  # a download's error, not the disk's

    with pytest.raises(ConnectionRefusedError):
        atomic_write(tmp_path / "f.bin", refused)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_directories_are_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(GenbenchError, match=r"a_file is a file, not a directory"):
        ensure_writable_dir(tmp_path / "a_file", "out_dir")
    with pytest.raises(GenbenchError, match=r"a_file is a file, not a directory"):
        ensure_writable_dir(tmp_path / "a_file" / "run", "out_dir")
    with pytest.raises(GenbenchError, match=r"cannot write there \(File name too long\)"):
        ensure_writable_dir(tmp_path / ("x" * 300), "out_dir")
    ensure_writable_dir(tmp_path / "new" / "run", "out_dir")
    assert list((tmp_path / "new" / "run").iterdir()) == []  # the probe leaves nothing


# ----------------------------------------------------------------------------- failed records


def test_failed_records_carry_stage_and_one_line_error(tmp_path: Path) -> None:
    record = make_record()
    err = RuntimeError("line one\nline two")
    err.add_note("a note on the way up")
    mark_failed(record, "training", err)
    save_record(record, tmp_path)
    loaded = load_record(tmp_path)
    assert loaded["status"] == "failed" and loaded["stage"] == "training"
    assert loaded["error"] == "RuntimeError: line one line two; a note on the way up"
    with pytest.raises(ValueError, match="unknown failure stage"):
        mark_failed(record, "somewhere", err)
    loaded["stage"] = "somewhere"
    with pytest.raises(GenbenchError, match="stage 'somewhere'"):
        save_record(loaded, tmp_path)
    mark_ok(loaded)
    assert loaded["status"] == "ok" and "stage" not in loaded and "error" not in loaded
    assert error_message(OSError(errno.EROFS, os.strerror(errno.EROFS), "/x")) == "Read-only file system: /x"
