"""The speed lines of benchmarks/gpu_bench.py: models built from conf/model yamls without Hydra, every model x mode x
dtype timed at batch 1 and at the largest batch that fits, and the modes that must draw the same samples.

Each point is genbench.metrics.speed.measure_point, the harness of `genbench speed`, so a point here reads like a
point of a speed record. `run` and `budget` are gpu_bench.Run and gpu_bench.Budget.
"""

from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genbench.metrics import speed
from genbench.metrics.speed_timing import count_flops, device_traffic, shape_label
from genbench.model import GenerativeModel

if TYPE_CHECKING:
    from gpu_bench import Budget, Run

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------------------------
# Models from conf/model/*.yaml, without Hydra.


def yaml_reader() -> str:
    """`PyYAML`, or `minimal` where it is not installed."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        return "minimal"
    return "PyYAML"


def read_yaml(path: Path) -> dict[str, Any]:
    """A model yaml as a dict: PyYAML if importable, else the flat `key: value  # comment` subset ours use
    (scalars and flow lists of scalars)."""
    if yaml_reader() == "minimal":
        return _flat_yaml(path.read_text())
    import yaml

    return yaml.safe_load(path.read_text())


def _flat_yaml(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        body = line.split("#", 1)[0].rstrip()
        if not body or body[0].isspace() or ":" not in body:
            continue
        key, value = (part.strip() for part in body.split(":", 1))
        out[key] = _scalar(value)
    return out


def _scalar(value: str) -> Any:
    if value.startswith("[") and value.endswith("]"):  # a flow list of scalars: [10, 25, 50]
        return [_scalar(item.strip()) for item in value[1:-1].split(",") if item.strip()]
    if value in ("null", "~", ""):
        return None
    if value in ("true", "false"):
        return value == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value.strip("'\"")


def model_configs() -> dict[str, dict[str, Any]]:
    return {p.stem: read_yaml(p) for p in sorted((ROOT / "conf" / "model").glob("*.yaml"))}


def build_model(name: str, cfg: dict[str, Any], spec: Any, overrides: dict[str, dict[str, object]]) -> GenerativeModel:
    module, cls = cfg["_target_"].rsplit(".", 1)
    kwargs = {k: v for k, v in cfg.items() if k not in ("_target_", "name")}
    torch.manual_seed(0)
    return getattr(importlib.import_module(module), cls)(spec=spec, **{**kwargs, **overrides.get(name, {})})


def image_spec(shape: tuple[int, int, int], name: str = "random") -> Any:
    from genbench.data import DataSpec

    return DataSpec(name, tuple(shape), 256, (0.0, 1.0), 0, 0, "random images (speed does not depend on data)")


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


# --------------------------------------------------------------------------------------------------------------
# Speed: every model x mode x dtype at batch 1 and the largest batch that fits.


class Section(dict):
    """A plain dict read like the DictConfig section genbench.metrics.speed expects (`sc.repeats`, `sc.get`)."""

    def __getattr__(self, name: str) -> Any:
        return self[name]


def predicted_call_s(points: list[dict[str, Any]], batch: int) -> float | None:
    """Seconds for one call at `batch` from the points so far: the latency's growth with batch size, its exponent
    clipped to [0.3, 1] (a GPU often costs the same at small batches, then grows linearly; 0.3 keeps a margin)."""
    ok = [p for p in points if p["status"] == "ok"]
    if not ok:
        return None
    last = ok[-1]
    slope = 0.3
    if len(ok) >= 2 and ok[-2]["latency_median_s"] > 0:
        prev = ok[-2]
        slope = math.log(last["latency_median_s"] / prev["latency_median_s"]) / math.log(
            last["batch_size"] / prev["batch_size"]
        )
    return last["latency_median_s"] * (batch / last["batch_size"]) ** min(max(slope, 0.3), 1.0)


def speed_line(
    model: GenerativeModel, mode: str, dtype: str, settings: dict[str, Any], deadline: float, guess_s: float | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Batch 1, then the x16 ladder until memory, the ladder or the line's share ends; one bisection after an OOM.

    `guess_s` predicts the first call (from the line's other dtype or size, per sequential network evaluation); a
    line whose first call would not fit its share is skipped, not started.
    """
    device = model.device
    generator = torch.Generator(device=device).manual_seed(0)
    calls = 1 + settings["point"]["min_repeats"]
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    ladder = list(settings["batches"])
    last_oom: int | None = None
    while ladder:
        batch = ladder.pop(0)
        left = deadline - time.monotonic()
        predicted = predicted_call_s(points, batch) if points else guess_s
        if left <= 0:
            skipped.append(f"batch {batch}: the line's share is spent")
            break
        if predicted is not None and predicted * calls > left:
            skipped.append(f"batch {batch}: predicted {predicted:.3g} s/call x {calls} > {max(left, 0):.3g} s left")
            break
        sc = Section(settings["point"], budget_s=min(settings["point"]["budget_s"], max(left, 0.0)))
        try:
            point = speed.measure_point(model, mode, dtype, batch, sc, generator, None)
        except Exception as err:  # a model's bug must not end the run: record it, measure the others
            point = {"mode": mode, "dtype": dtype, "batch_size": batch, "status": "error", "error": error_text(err)}
        points.append(point)
        if point["status"] == "oom":
            last_oom = batch
            ok = [p["batch_size"] for p in points if p["status"] == "ok"]
            if ok and batch // ok[-1] >= 4 and not any(p.get("bisect") for p in points):
                middle = 2 ** round(math.log2(math.sqrt(ok[-1] * batch)))
                ladder = [middle]
                points[-1]["bisect"] = True
                continue
            break
        if point["status"] != "ok":
            break
    ok = [p for p in points if p["status"] == "ok"]
    if ok and model.network_evaluations(mode) == 1:  # one network pass: counting replays one cheap call
        with torch.inference_mode():
            flops = count_flops(speed.sampler(model, 1, mode, "fp32", generator))
        for p in ok:
            p.update(flops_per_sample=flops, achieved_flops=flops * p["throughput"])
            p["fraction_of_peak"] = p["achieved_flops"] / p["peak_flops"] if p.get("peak_flops") else None
    for p in points:
        p["largest"] = bool(ok) and p is ok[-1]
    failed = [p for p in points if p["status"] not in ("ok", "oom")]
    if ok:
        if failed:
            ok[-1]["limited_by"] = f"{failed[-1]['status']} at batch {failed[-1]['batch_size']}"
        elif last_oom is not None:
            ok[-1]["limited_by"] = f"memory (out of memory at batch {last_oom})"
        elif skipped:
            ok[-1]["limited_by"] = "time share"
        else:
            ok[-1]["limited_by"] = f"ladder end ({settings['batches'][-1]})"
    return points, skipped


def call_traffic(model: GenerativeModel, mode: str) -> dict[str, Any]:
    """Ops (about one kernel launch each), syncs and host-device copies of one batch-1 sample call."""
    generator = torch.Generator(device=model.device).manual_seed(0)
    with torch.inference_mode(), device_traffic() as traffic:
        model.sample(1, generator=generator, mode=mode)
    return {**traffic.as_dict(), "where": dict(traffic.where.most_common(5))}


def part_speed(run: Run, name: str, budget: Budget, guesses: dict[tuple[str, str, str], float]) -> None:
    settings, device = run.settings, run.device
    shape = settings["sizes"][name]
    entry = run.part(name, 0.0)
    spec = image_spec(shape)
    models: list[tuple[str, GenerativeModel]] = []
    for model_name, cfg in model_configs().items():
        try:
            models.append((model_name, build_model(model_name, cfg, spec, settings["overrides"]).to(device).eval()))
        except Exception as err:
            entry["skipped"].append(f"{model_name}: not built for {shape_label(shape)}: {error_text(err)}")
    # cheap lines first, so what they leave of the share goes to the slow (sequential) ones at the end
    lines = sorted(
        (
            (m.network_evaluations(mode), n, m, mode, d)
            for n, m in models
            for mode in m.sampling_modes
            for d in settings["dtypes"]
        ),
        key=lambda t: (t[0], t[1]),
    )
    deadline = budget.part(name)
    entry["share_s"] = round(deadline - time.monotonic(), 1)
    run.say(f"{name}: {len(lines)} lines at {shape_label(shape)}, {entry['share_s']:.0f} s")
    for i, (evaluations, model_name, model, mode, dtype) in enumerate(lines):
        line_deadline = budget.line(deadline, len(lines) - i)
        head = {"model": model_name, "shape": shape_label(shape), "mode": mode, "dtype": dtype}
        head.update(network_evaluations=evaluations, parameters=sum(p.numel() for p in model.parameters()))
        if not speed.autocast_supported(device, dtype):
            entry["skipped"].append(f"{model_name} {mode} {dtype}: torch has no autocast for {device.type}")
            continue
        key = (model_name, mode, dtype)
        per_evaluation = guesses.get(key) or guesses.get((model_name, mode, "fp32"))
        guess = None if per_evaluation is None else 1.5 * per_evaluation * evaluations  # a margin of 1.5
        points, skipped = speed_line(model, mode, dtype, settings, line_deadline, guess)
        first = next((p for p in points if p["status"] == "ok"), None)
        # counting dispatches costs a few times a call (Python per op): only where the line's share has room
        if dtype == "fp32" and first and 4 * first["latency_median_s"] < line_deadline - time.monotonic():
            head["traffic"] = call_traffic(model, mode)
        elif dtype == "fp32":
            skipped.append("ops/syncs/copies of one call not counted (no room left in the share)")
        entry["results"] += [{**head, **p} for p in points]
        entry["skipped"] += [f"{model_name} {mode} {dtype}: {s}" for s in skipped]
        if first is not None:  # seconds per sequential network evaluation: the next dtype's or size's guess
            guesses[key] = first["latency_median_s"] / evaluations
        if device.type == "cuda":  # what the allocator keeps from a huge batch would crowd the next line
            torch.cuda.empty_cache()
        largest = next((p for p in points if p.get("largest")), None)
        run.say(
            f"{name} {model_name} {mode} {dtype}: "
            + (f"b1 {first['latency_median_s']:.3g} s" if first else "no point")
            + (f", largest b{largest['batch_size']} {largest['throughput']:.4g}/s" if largest else "")
            + (f" ({skipped[0]})" if skipped else "")
        )
    run.finish(entry)


# --------------------------------------------------------------------------------------------------------------
# Modes that draw the same samples (cached vs naive PixelCNN): equal samples, and both timed at one batch size.


def part_equivalent_modes(run: Run, name: str, budget: Budget) -> None:
    settings, device = run.settings, run.device
    entry = run.part(name, 0.0)
    deadline = budget.part(name)
    entry["share_s"] = round(deadline - time.monotonic(), 1)
    jobs = []
    for shape in settings["sizes"].values():
        for model_name, cfg in model_configs().items():
            try:
                model = build_model(model_name, cfg, image_spec(shape), settings["overrides"]).to(device).eval()
            except Exception as err:
                entry["skipped"].append(f"{model_name} at {shape_label(shape)}: not built: {error_text(err)}")
                continue
            if len(model.sampling_modes) > 1 and not model.mode_changes_samples:
                jobs.append((shape, model_name, model))
    run.say(f"{name}: {len(jobs)} models whose modes draw the same samples, {entry['share_s']:.0f} s")
    batch = settings["pixelcnn_batch"]
    for i, (shape, model_name, model) in enumerate(jobs):
        line_deadline = budget.line(deadline, len(jobs) - i)
        head = {"model": model_name, "shape": shape_label(shape)}
        samples = {}
        for mode in model.sampling_modes:
            if time.monotonic() > line_deadline:
                entry["skipped"].append(f"{model_name} {shape_label(shape)}: share spent before the {mode} samples")
                break
            with torch.inference_mode():
                generator = torch.Generator(device=device).manual_seed(0)
                samples[mode] = model.sample(4, generator=generator, mode=mode)
        if len(samples) == len(model.sampling_modes):
            reference = samples[model.sampling_modes[0]]
            for mode, drawn in samples.items():
                equal = (drawn == reference).float().mean().item()
                entry["results"].append({**head, "check": "same samples", "mode": mode, "equal_fraction": equal})
        for mode in model.sampling_modes:
            left = line_deadline - time.monotonic()
            if left <= 0:
                entry["skipped"].append(f"{model_name} {shape_label(shape)} {mode} batch {batch}: share spent")
                continue
            sc = Section(settings["point"], budget_s=min(settings["point"]["budget_s"], left))
            generator = torch.Generator(device=device).manual_seed(0)
            try:
                point = speed.measure_point(model, mode, "fp32", batch, sc, generator, None)
            except Exception as err:
                point = {
                    "mode": mode,
                    "dtype": "fp32",
                    "batch_size": batch,
                    "status": "error",
                    "error": error_text(err),
                }
            entry["results"].append({**head, "check": "timing", **point})
            result = point.get("latency_median_s", point["status"])
            run.say(f"{name} {model_name} {shape_label(shape)} {mode} b{batch}: {result}")
    run.finish(entry)
