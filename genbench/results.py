"""The run record (`record.json`): schema, construction, atomic save and a validating load.

A record is plain JSON so any tool can read it. Every metric carries its unit and its kind
(DESIGN.md, "Records and reports"), so no reader has to guess what a number means.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from genbench.errors import GenbenchError

SCHEMA_VERSION = 2  # 2: every metric carries `variant`, the fields that tell it apart from others of its name
RECORD_NAME = "record.json"
METRIC_KINDS = ("exact", "lower_bound", "estimate", "measured")
RECORD_STATUSES = ("ok", "failed")
# Where a job stopped, in pipeline order; a failed record names one (`stage`) and the error (`error`).
FAILURE_STAGES = ("config", "data", "model", "checkpoint", "training", "evaluation")
REQUIRED_RECORD_KEYS = (
    "schema_version",
    "status",
    "model",
    "dataset",
    "seed",
    "config_hash",
    "git_commit",
    "packages",
    "device",
    "train",
    "metrics",
)
REQUIRED_METRIC_KEYS = ("name", "value", "unit", "kind", "stderr", "n", "split")
# Schema 1 records name no variant; these fields told variants apart then.
LEGACY_SCHEMA_VERSION = 1
LEGACY_VARIANT_FIELDS = (
    "method", "data", "features", "k", "chain_length", "mode", "batch_size", "dtype", "compile", "device", "split",
)  # fmt: skip
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pytorch-fid", "hydra-core", "scikit-learn", "genbench")


@dataclass
class Metric:
    """One number in a record. `extra` holds the per-metric fields DESIGN.md names (method, features, ...).

    `variant` names the fields of `extra` that tell this measurement apart from others of the same name in one
    run (FID per sampling mode: `("features", "mode", "source")`). The report keeps every variant in its own cell
    and refuses a record in which two metrics share name and variant, so a new field that should separate two
    numbers cannot be averaged away silently. Fields not named (sizes, chosen bandwidths, timings) describe the
    measurement without splitting it.
    """

    name: str
    value: float | None
    unit: str
    kind: str
    stderr: float | None = None
    n: int | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    variant: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"metric {self.name}: unknown kind {self.kind!r}; accepted: {METRIC_KINDS}")
        missing = [f for f in self.variant if f not in self.extra]
        if missing:
            raise ValueError(f"metric {self.name}: variant fields {missing} not among its fields {list(self.extra)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra, variant = d.pop("extra"), d.pop("variant")
        return {**d, **extra, "variant": {f: extra[f] for f in variant}}


def config_hash(config: dict[str, Any]) -> str:
    """A short, order-independent hash of a resolved config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_name(device: torch.device | str) -> str:
    """Human-readable device name, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (x86_64, 2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def new_record(
    *, model: str, dataset: str, seed: int, config: dict[str, Any], device: torch.device | str
) -> dict[str, Any]:
    """A record with every required field; training and metrics fill in later."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "model": model,
        "dataset": dataset,
        "seed": seed,
        "config_hash": config_hash(config),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "device": device_name(device),
        "train": {"steps": 0, "wall_time_s": 0.0},
        "metrics": [],
    }


def _json_safe(value: Any) -> Any:
    """NaN/Inf are not JSON: write them as null, never as a fake number."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# Errors of the file system rather than of a writer's own work (a download's timeout is also an OSError):
# they get one line naming the file.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENAMETOOLONG}
    | {errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
)


def _temp_name(name: str) -> str:
    """`.<name>.<host>-<pid>.<token>`: the owner is in the name, so a later writer can tell debris from work."""
    return f".{name}.{socket.gethostname()}-{os.getpid()}.{secrets.token_hex(4)}"


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Delete temporaries of `path` left by a killed writer on this host (a live writer's are kept).

    A kill -9 between creating a temporary and renaming it leaves the temporary behind; the next write of the
    same path removes it. Temporaries of other hosts (a shared file system) are left alone: their writer may
    still be running.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?P<host>.+)-(?P<pid>\d+)\.[0-9a-f]{{8}}(\..*)?$")
    if not path.parent.is_dir():
        return
    for entry in path.parent.iterdir():
        found = pattern.match(entry.name)
        if not found or found["host"] != socket.gethostname() or _is_alive(int(found["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh temporary name beside `path` (not created), which `remove_stale_temps(path)` recognises."""
    return path.parent / (_temp_name(path.name) + suffix)


def _create_temp(path: Path) -> Path:
    """Create an empty temporary beside `path` with the mode a plain `open()` gives (0666 minus the umask).

    `tempfile.mkstemp` makes 0600 files whatever the umask, so a shared data cache would become private.
    """
    while True:
        tmp = temp_sibling(path, path.suffix or ".tmp")  # the suffix, for writers that choose a format by it
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_error(path: Path, err: OSError) -> GenbenchError:
    """One line for a file-system error while writing `path` (a full disk, a read-only folder, ...)."""
    return GenbenchError(f"cannot write {path}: {os.strerror(err.errno) if err.errno else err}")


def ensure_writable_dir(folder: Path, what: str) -> None:
    """Create `folder` (and its parents) and prove a file can be made in it, or raise one line naming why."""
    try:
        for parent in (folder, *folder.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise GenbenchError(f"{what} {folder}: {parent} is a file, not a directory")
                break
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder / ".write-check")
        _create_temp(folder / ".write-check").unlink()
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise GenbenchError(f"{what} {folder}: cannot write there ({reason})") from err


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a unique temporary file beside `path`, then rename it onto `path`.

    Readers never see half a file, and two processes writing the same path at once (parallel sweep jobs
    filling one cache) never share a temporary file. Temporaries a killed writer left are removed first.
    A full disk or a read-only folder raises one line naming `path`.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        tmp = _create_temp(path)
    except OSError as err:
        raise write_error(path, err) from err
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in WRITE_ERRNOS:
            raise write_error(path, err) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_benchmark(folder: Path, stem: str, record: dict[str, Any], table: str) -> None:
    """A benchmark's record as `<stem>.json` and its table as `<stem>.md` in `folder`; prints the table."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{stem}.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(folder / f"{stem}.md", table)
    print(table)
    print(f"wrote {folder / stem}.json and .md")


def save_record(record: dict[str, Any], run_dir: Path) -> Path:
    validate_record(record)
    path = Path(run_dir) / RECORD_NAME
    atomic_write_text(path, json.dumps(_json_safe(record), indent=2, sort_keys=False) + "\n")
    return path


def validate_record(record: dict[str, Any], source: str = "record") -> dict[str, Any]:
    """Check the schema; raise a one-line `GenbenchError` naming what is wrong."""
    missing = [k for k in REQUIRED_RECORD_KEYS if k not in record]
    if missing:
        raise GenbenchError(f"{source}: missing fields {missing}")
    if record["schema_version"] not in (LEGACY_SCHEMA_VERSION, SCHEMA_VERSION):
        raise GenbenchError(f"{source}: schema_version {record['schema_version']}, expected {SCHEMA_VERSION}")
    if record["status"] not in RECORD_STATUSES:
        raise GenbenchError(f"{source}: status {record['status']!r}; accepted: {RECORD_STATUSES}")
    if record.get("stage") is not None and record["stage"] not in FAILURE_STAGES:
        raise GenbenchError(f"{source}: stage {record['stage']!r}; accepted: {FAILURE_STAGES}")
    for i, m in enumerate(record["metrics"]):
        lacking = [k for k in REQUIRED_METRIC_KEYS if k not in m]
        if lacking:
            raise GenbenchError(f"{source}: metric #{i} ({m.get('name')}) lacks {lacking}")
        if m["kind"] not in METRIC_KINDS:
            raise GenbenchError(f"{source}: metric {m['name']} has kind {m['kind']!r}; accepted: {METRIC_KINDS}")
        if record["schema_version"] == LEGACY_SCHEMA_VERSION:  # before variants were explicit
            m.setdefault("variant", {f: m[f] for f in LEGACY_VARIANT_FIELDS if m.get(f) is not None})
        elif not isinstance(m.get("variant"), dict):
            raise GenbenchError(f"{source}: metric {m['name']} lacks its variant (the fields that tell it apart)")
    return record


def load_record(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise GenbenchError(f"cannot read run record {path}: {err}") from err
    return validate_record(record, str(path))


def error_message(err: BaseException) -> str:
    """An error (and the notes added to it on its way up) as the one line a record and the command line show."""
    if isinstance(err, GenbenchError):
        text = str(err)
    elif isinstance(err, OSError) and err.strerror:
        text = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join("; ".join([text, *getattr(err, "__notes__", ())]).split())


def mark_failed(record: dict[str, Any], stage: str, err: BaseException) -> None:
    """Mark `record` failed at `stage` (one of FAILURE_STAGES) with the error's one line."""
    if stage not in FAILURE_STAGES:
        raise ValueError(f"unknown failure stage {stage!r}; accepted: {FAILURE_STAGES}")
    record.update(status="failed", stage=stage, error=error_message(err))


def mark_ok(record: dict[str, Any]) -> None:
    record["status"] = "ok"
    record.pop("stage", None)
    record.pop("error", None)


def find_metric(record: dict[str, Any], name: str, **fields: Any) -> dict[str, Any] | None:
    """The first metric called `name` whose fields match `fields` (e.g. `method="elbo"`)."""
    for m in record["metrics"]:
        if m["name"] == name and all(m.get(k) == v for k, v in fields.items()):
            return m
    return None
