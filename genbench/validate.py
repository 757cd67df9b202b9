"""`genbench validate eval=fast|default|paper`: every estimator of the suite against a known truth.

No likelihood column is worth more than the distance of its estimator from the truth, so this command measures it:
AIS and BDMC on a pPCA decoder (exact `log p(x)` in closed form), IWAE-k as k grows on the same decoder, the DBM's
AIS log Z against enumeration, Parzen against a Gaussian's density, toy-2D KL to the truth, the Fréchet distance,
KID against the population MMD, precision/recall on supports of known overlap, bits/dim of a known discrete
distribution and the teacher scored by itself (the cases: genbench/validate_likelihood.py and
genbench/validate_quality.py). It prints one table and writes it as a JSON record and a Markdown file under
`validate_dir` (default `results/validate/`); the exit status is non-zero when a row fails.

The eval preset sizes the run: its AIS section is the protocol under test, and conf/validate.yaml holds the
case sizes and tolerances of each preset (`fast` runs in CI, `default` in minutes, `paper` is long on a CPU).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from genbench import CONF_DIR
from genbench.errors import GenbenchError
from genbench.results import atomic_write_text, git_commit, load_record, package_versions
from genbench.validate_likelihood import (
    Check,
    ais_cases,
    bits_per_dim_case,
    dbm_case,
    iwae_cases,
    kl_cases,
    mean_se,
    parzen_case,
    teacher_case,
    timed,
)
from genbench.validate_quality import frechet_cases, kid_case, precision_recall_case

SIZES_FILE = CONF_DIR / "validate.yaml"
COLUMNS = ("estimator", "case", "truth", "estimate", "error", "MC stderr", "tolerance", "pass", "wall s")


def case_sizes(preset: str) -> DictConfig:
    """The sizes and tolerances of `preset` in conf/validate.yaml."""
    sizes = OmegaConf.load(SIZES_FILE)
    if preset not in sizes:
        raise GenbenchError(f"no validate sizes for eval preset {preset!r} in {SIZES_FILE}; accepted: {list(sizes)}")
    return sizes[preset]


def run_cases(eval_cfg: Any, sizes: Any) -> list[Check]:
    """Every case, in the table's order, on one thread (the timings then compare across rows)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = ais_cases(eval_cfg, sizes) + iwae_cases(sizes) + dbm_case(sizes) + parzen_case(sizes)
        rows += kl_cases(sizes) + teacher_case(sizes) + bits_per_dim_case(sizes)
        return rows + frechet_cases(sizes) + kid_case(sizes) + precision_recall_case(sizes)
    finally:
        torch.set_num_threads(threads)


def trained_model_cases(run_dir: str, eval_cfg: Any, sizes: Any) -> list[Check]:
    """A trained decoder model (`run_dir=`): no truth, but the preset's AIS must be at least as tight as IWAE-k on
    the same test examples (where the model has a bound) and its BDMC gap on simulated data small."""
    from genbench.metrics import ais
    from genbench.metrics import likelihood as lk
    from genbench.pipeline import load_run

    model, data, _ = load_run(run_dir)
    acfg = eval_cfg.likelihood.ais
    settings, rows = lk.ais_settings(acfg), []
    if not callable(getattr(model, "log_prob_given_latent", None)) or not hasattr(model, "sample_given_latent"):
        raise GenbenchError(f"validate run_dir={run_dir}: the model has no log_prob_given_latent / sample_given_latent")
    name = f"{load_record(run_dir)['model']} on {data.spec.name}"
    x = data.test[: int(acfg.n_test)]
    with timed(rows), lk.frozen(model):
        est = lk.forward_in_batches(model.log_prob_given_latent, x, model.latent_dim, settings, len(x), generator(1))
        k = int(sizes.reference_iwae_k)
        if model.likelihood == "lower_bound":
            with torch.no_grad():
                iwae = model.log_prob_bound(x, k, chunk=256, generator=generator(2)).double().cpu()
            diff, se = mean_se(est.log_p.cpu() - iwae)
            ref = float(iwae.mean())
            row = Check("ais", f"{name}: vs iwae-{k}, {len(x)} test ex.", ref, ref + diff, se, "error >= 0", diff >= 0)
            row.extra = {**settings.protocol(), **est.summary(), "above_on": int((est.log_p.cpu() > iwae).sum())}
            rows.append(row)
    with timed(rows), lk.frozen(model):
        n = int(sizes.bdmc_examples)
        obs, sampler = model.log_prob_given_latent, model.sample_given_latent
        _, lower, upper = ais.bdmc(obs, sampler, model.latent_dim, n, settings, generator(3), model.device)
        gap, se = mean_se(upper - lower)
        tol = float(sizes.trained_bdmc_gap)
        rows.append(Check("bdmc gap", f"{name}: {n} simulated ex.", 0.0, gap, se, f"gap <= {tol:g} nats", gap <= tol))
    return rows


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fmt(value: float | None) -> str:
    """Significant digits in plain notation where it reads well."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    return f"{value:.3g}"


def table_rows(rows: list[Check]) -> list[list[str]]:
    return [
        [
            r.estimator,
            r.case,
            fmt(r.truth),
            fmt(r.estimate),
            fmt(r.error),
            fmt(r.stderr),
            r.tolerance,
            "pass" if r.passed else "FAIL",
            f"{r.wall_s:.1f}",
        ]
        for r in rows
    ]


def text_table(rows: list[Check]) -> str:
    cells = [list(COLUMNS), *table_rows(rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def markdown(rows: list[Check], command: str, wall_s: float) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |\n" for row in table_rows(rows))
    failed = sum(not r.passed for r in rows)
    verdict = "every row passes" if not failed else f"{failed} of {len(rows)} rows FAIL"
    return (
        f"# {command}\n\n"
        f"Command: `{command}` ({len(rows)} rows, {verdict}; {wall_s:.0f} s wall on one thread; "
        "the times depend on the machine's load). Error = estimate - truth; nats unless the estimator's unit says "
        "otherwise; the AIS rows run the preset's own protocol (their records hold it).\n\n" + head + body
    )


def write_results(
    rows: list[Check], preset: str, folder: Path, wall_s: float, run_dir: str | None = None
) -> tuple[Path, Path]:
    """`validate_<preset>.json` (every row with its extra fields, the environment) and `validate_<preset>.md`;
    with a trained run, `validate_<preset>_<model>.*`."""
    record = {
        "command": f"genbench validate eval={preset}" + (f" run_dir={run_dir}" if run_dir else ""),
        "preset": preset,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "wall_time_s": wall_s,
        "all_passed": all(r.passed for r in rows),
        "rows": [{**{k: v for k, v in vars(r).items()}, "error": r.error} for r in rows],
    }
    stem = f"validate_{preset}" + (f"_{load_record(run_dir)['model']}" if run_dir else "")
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(record, indent=2, default=float) + "\n")
    atomic_write_text(md_path, markdown(rows, record["command"], wall_s))
    return json_path, md_path


def validate(eval_cfg: Any, folder: Path | str, run_dir: str | None = None) -> list[Check]:
    """Run every case at the eval preset's sizes (and a trained run's checks), print the table, write it to `folder`."""
    preset = str(eval_cfg.name)
    start = time.perf_counter()
    sizes = case_sizes(preset)
    rows = run_cases(eval_cfg, sizes)
    if run_dir:
        rows += trained_model_cases(run_dir, eval_cfg, sizes)
    wall = time.perf_counter() - start
    print(text_table(rows))
    json_path, md_path = write_results(rows, preset, Path(folder), wall, run_dir)
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows pass ({wall:.0f} s); wrote {json_path} and {md_path}")
    return rows


def run_validate(cfg: DictConfig) -> list[Check]:
    """The Hydra task: `genbench validate eval=default [run_dir=RUN] [+validate_dir=DIR]`; a failing row is an error."""
    rows = validate(cfg.eval, cfg.get("validate_dir") or "results/validate", cfg.get("run_dir"))
    failed = [f"{r.estimator} ({r.case})" for r in rows if not r.passed]
    if failed:
        raise GenbenchError(f"{len(failed)} validation rows fail: {', '.join(failed)}")
    return rows
