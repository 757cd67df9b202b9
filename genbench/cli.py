"""`genbench <command> [hydra overrides]`: a thin Hydra wrapper around the pipeline's plain functions.

Commands: `bench` (train + evaluate one run, or a sweep with `-m`), `eval` (re-evaluate `run_dir=`),
`speed` (the sampling-speed harness) and `report DIR` (tables and figures from run records).
Errors the user can fix are printed as one line with a non-zero exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from genbench import CONF_DIR
from genbench.errors import GenbenchError

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


def run_hydra(command: str, overrides: list[str]) -> None:
    task = _task(command)

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def entry(cfg: DictConfig) -> None:
        try:
            task(cfg)
        except GenbenchError as err:
            print(f"genbench {command}: error: {err}", file=sys.stderr)
            # In a sweep the failed job has written a `failed` record; the other jobs go on.
            if HydraConfig.get().mode != RunMode.MULTIRUN:
                sys.exit(1)

    sys.argv = [f"genbench {command}", *overrides]
    entry()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "report":
            from genbench.report import main as report_main

            return report_main(rest)
        if command not in HYDRA_COMMANDS:
            raise GenbenchError(f"unknown command {command!r}; accepted: {', '.join(COMMANDS)}")
        check_choices(rest)
        run_hydra(command, rest)
    except GenbenchError as err:
        print(f"genbench: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
