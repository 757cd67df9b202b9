"""`genbench <command> [hydra overrides]`: a thin Hydra wrapper around the pipeline's plain functions.

Commands: `bench` (train + evaluate one run, or a sweep with `-m`), `eval` (re-evaluate `run_dir=`),
`speed` (the sampling-speed harness) and `report DIR` (tables and figures from run records).

Exit codes: 0 when every job finished; 1 when a job failed (in a sweep: any job; every job has written its
`failed` record by then); 2 when the command line itself is refused (unknown command, choice, key or a value of
the wrong type), before any job starts. Errors the user can fix are one line on stderr; an unexpected error in
a job prints its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from genbench import CONF_DIR
from genbench.config_schema import config_error_message  # also stores the schema in Hydra's ConfigStore
from genbench.errors import GenbenchError
from genbench.results import error_message

HYDRA_COMMANDS = ("bench", "eval", "speed", "validate")
COMMANDS = (*HYDRA_COMMANDS, "report")
CHECKED_GROUPS = ("model", "dataset", "eval", "train")
USAGE = f"usage: genbench {{{','.join(COMMANDS)}}} [hydra overrides | report DIR]"


def _task(command: str) -> Callable[[DictConfig], Any]:
    # Imported lazily so `genbench report` and `--help` stay fast.
    if command == "bench":
        from genbench.pipeline import bench

        return bench
    if command == "eval":
        from genbench.pipeline import evaluate_run

        return evaluate_run
    if command == "validate":
        from genbench.validate import run_validate

        return run_validate
    from genbench.speed import run_speed

    return run_speed


def check_choices(overrides: list[str]) -> None:
    """Refuse an unknown `model=`/`dataset=`/... choice in one line, before Hydra prints a page."""
    for item in overrides:
        key, sep, value = item.partition("=")
        group = key.lstrip("+~")
        if not sep or group not in CHECKED_GROUPS:
            continue
        accepted = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        for choice in value.split(","):
            if choice not in accepted:
                raise GenbenchError(f"unknown {group} {choice!r}; accepted: {', '.join(accepted)}")


class SweepJobFailed(Exception):
    """Raised by a failed sweep job, so that Hydra marks the job FAILED and the sweep ends with a non-zero exit."""


def run_job(command: str, task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run one job; a failure prints its one line (or, if unexpected, its traceback) and ends the job failed."""
    try:
        return task(cfg)
    except Exception as err:
        if isinstance(err, GenbenchError | OSError):
            print(f"genbench {command}: error: {error_message(err)}", file=sys.stderr)
        else:
            traceback.print_exc()
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # The other jobs go on (Hydra runs the whole batch); the sweeper re-raises this once they are done.
            raise SweepJobFailed(error_message(err)) from None
        raise SystemExit(1) from None


def run_hydra(command: str, overrides: list[str]) -> int:
    """Compose the config with Hydra and run the job(s); returns the exit code (module docstring)."""
    task = _task(command)

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def entry(cfg: DictConfig) -> None:
        run_job(command, task, cfg)

    sys.argv = [f"genbench {command}", *overrides]
    # Hydra prints its own page for a composition error and exits; with HYDRA_FULL_ERROR it raises instead,
    # and the error becomes one line here.
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        entry()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except SweepJobFailed:
        message = "a sweep job failed (each failed job said why above, and in its record.json)"
        print(f"genbench {command}: error: {message}", file=sys.stderr)
        return 1
    except (HydraException, OmegaConfBaseException) as err:
        print(f"genbench {command}: error: {config_error_message(err)}", file=sys.stderr)
        return 2
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "report":
            from genbench.report.comparison import main as report_main

            return report_main(rest)
        if command not in HYDRA_COMMANDS:
            raise GenbenchError(f"unknown command {command!r}; accepted: {', '.join(COMMANDS)}")
        check_choices(rest)
        return run_hydra(command, rest)
    except GenbenchError as err:
        print(f"genbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
