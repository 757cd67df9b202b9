"""The run record: schema round-trip, validation messages, atomic writes, no fake numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genbench.errors import GenbenchError
from genbench.results import Metric, find_metric, load_record, new_record, save_record


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
