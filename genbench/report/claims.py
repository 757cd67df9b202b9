"""The report's section "What the seed says, measured": the six claims of Goodfellow's comparison of GANs with
the other families, each answered from the records with its numbers and a one-sentence verdict.

(a) A GAN samples in one pass; PixelRNN/PixelCNN generate pixel by pixel.
(b) The VAE's bound makes it biased; a GAN is asymptotically consistent.
(c) DBMs need a variational bound, an intractable partition function and Markov-chain sampling.
(d) GSNs need Markov chains.
(e) NICE/RealNVP's latent size equals the data size.
(f) GAN training may not converge.
(g) (not the seed's: diffusion, the dominant Markov-chain sampler today) how many network evaluations a diffusion
    sample needs to reach the GAN's FID.

Models are found by what their records say they are (`model_info.family`, `network_evaluations`), never by name,
and sweeps by the settings that tell their groups apart (`Group.settings`: a width, a latent size, a loss).
Anything the records lack reads "not measured in this run", with what is missing. `make claims` writes records
that answer all six (conf/experiment/claims_*.yaml); the figures are drawn by `genbench.report.figures` from the
series computed here.

References:
    Goodfellow 2016, "NIPS 2016 Tutorial: Generative Adversarial Networks", sections 2-3.
    Burda, Grosse, Salakhutdinov 2016 (IWAE); Salakhutdinov & Hinton 2009 (DBM); Salakhutdinov & Murray 2008
        (AIS for log Z); Bengio et al. 2014 (GSN); Dinh et al. 2014, 2017 (NICE, RealNVP).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genbench.report.cells import fmt, mean_std, mean_text
from genbench.report.records import Group, agrees, candidates, data_dim, loss_curve, scalar_curves, variants
from genbench.report.tables import quality_cell, table_features, throughput_cell

NOT_MEASURED = "not measured in this run"
Series = dict[str, list[tuple[float, float, float | None]]]  # line -> [(x, mean, std)]


@dataclass
class Evidence:
    """Everything the claims read: every group of every table, and the speed records' points."""

    tables: dict[str, list[Group]]
    speed_points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def groups(self) -> list[Group]:
        return [g for groups in self.tables.values() for g in groups]

    def of_family(self, family: str, dataset: str | None = None) -> list[Group]:
        return [g for g in self.groups if g.family == family and (dataset is None or g.dataset == dataset)]


@dataclass
class Answer:
    """A claim's measured text (numbers), its verdict in plain words, and whether the records could answer it."""

    text: str
    verdict: str = ""
    measured: bool = True


def missing(why: str) -> Answer:
    return Answer(f"{NOT_MEASURED} ({why}).", measured=False)


def metric_means(group: Group, name: str, **fields: Any) -> tuple[float, float | None, int] | None:
    """Mean, std over seeds and seed count of the one variant of `name` matching `fields` (None if not one)."""
    found = candidates(group, name, **fields)
    if len(found) != 1:
        return None
    mean, std = mean_std([m["value"] for m in found[0]])
    return mean, std, len(found[0])


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log y on log x: how a cost grows with a size (1 = proportional)."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2:
        return None
    mx, my = statistics.fmean(x for x, _ in pts), statistics.fmean(y for _, y in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


# ----------------------------------------------------------------------------- (a) one pass vs pixel by pixel


def speed_lines(evidence: Evidence) -> dict[str, dict[int, dict[str, Any]]]:
    """fp32 eager speed points by line ('pixelcnn (cached)') and data size D: batch-1 latency, best throughput,
    FLOPs per sample, sequential network evaluations and the family."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for p in evidence.speed_points:
        if p.get("status") != "ok" or p.get("dtype") != "fp32" or p.get("compile"):
            continue
        info = p.get("model_info") or {}
        dims = math.prod(int(s) for s in str(p["shape"]).replace("x", " ").split()) if p.get("shape") else None
        if not dims:
            continue
        modes = info.get("sampling_modes") or []
        line = p["model"] if len(modes) <= 1 else f"{p['model']} ({p['mode']})"
        at = out.setdefault(line, {}).setdefault(dims, {"family": info.get("family"), "best": 0.0})
        at["evaluations"] = (info.get("network_evaluations") or {}).get(p["mode"])
        at["flops"] = p.get("flops_per_sample") or at.get("flops")
        if p["batch_size"] == 1:
            at["latency_b1"] = p["latency_median_s"]
        at["best"] = max(at["best"], p["throughput"])
    return out


def one_pass_sampling(evidence: Evidence) -> Answer:
    lines = speed_lines(evidence)
    one_pass = {k: v for k, v in lines.items() if any(x["family"] == "adversarial" for x in v.values())}
    pixel = {k: v for k, v in lines.items() if any(x["family"] == "autoregressive" for x in v.values())}
    if not one_pass or not pixel:
        return runs_one_pass(evidence)
    parts, growth = [], {}
    for line, by_dims in {**one_pass, **pixel}.items():
        pts = [(d, x["latency_b1"]) for d, x in sorted(by_dims.items()) if "latency_b1" in x]
        growth[line] = slope(pts)
        cells = [
            f"D={d}: {fmt(x.get('latency_b1', float('nan')), 3)} s at batch 1, best {fmt(x['best'], 3)} samples/s, "
            f"{x.get('evaluations', '?')} sequential evaluations"
            + (f", {fmt(x['flops'] / 1e6, 3)} MFLOP/sample" if x.get("flops") else "")
            for d, x in sorted(by_dims.items())
        ]
        parts.append(f"{line}: " + "; ".join(cells))
    gan_line = next(iter(one_pass))
    ar_line = max(pixel, key=lambda k: growth.get(k) or 0)
    text = ". ".join(parts) + "."
    g, a = growth.get(gan_line), growth.get(ar_line)
    if g is None or a is None:
        return Answer(text, "the records hold too few image sizes to measure how latency grows.")
    common = sorted(set(one_pass[gan_line]) & set(pixel[ar_line]))
    compute = ""
    if common:
        d = common[-1]
        x, y = one_pass[gan_line][d], pixel[ar_line][d]
        if x.get("flops") and y.get("flops") and x.get("latency_b1") and y.get("latency_b1"):
            compute = (
                f"; at D={d} {ar_line} needs {fmt(y['flops'] / x['flops'], 2)}× the GAN's FLOPs per sample but "
                f"{fmt(y['latency_b1'] / x['latency_b1'], 3)}× its batch-1 time: the cost is sequential depth "
                f"({y.get('evaluations')} network evaluations against {x.get('evaluations')}), not compute"
            )
    verdict = (
        f"Supported: batch-1 latency grows as D^{a:.2f} for {ar_line} and as D^{g:.2f} for {gan_line}{compute}."
        if a > g + 0.3
        else f"Not supported here: latency grows as D^{a:.2f} ({ar_line}) against D^{g:.2f} ({gan_line})."
    )
    return Answer(text, verdict)


def runs_one_pass(evidence: Evidence) -> Answer:
    """The claim from run records alone (one image size): throughput ratios at one device, batch and dtype."""
    gans, ars = evidence.of_family("adversarial"), evidence.of_family("autoregressive")
    gans = [g for g in gans if g.dataset in {a.dataset for a in ars}]
    if not gans or not ars:
        return missing("needs speed records at several image sizes, or throughput of an adversarial and an "
                       "autoregressive model on one dataset")  # fmt: skip
    gan, parts = gans[0], []
    for ar in (a for a in ars if a.dataset == gan.dataset):
        g, r = throughput_cell(gan), throughput_cell(ar)
        if g.mean is None or r.mean is None or g.first("batch_size") != r.first("batch_size"):
            parts.append(f"{ar.label}: no throughput at the GAN's batch size")
            continue
        evals = (ar.info.get("network_evaluations") or {}).get(ar.default_mode)
        parts.append(
            f"{gan.label} {fmt(g.mean)} and {ar.label} {fmt(r.mean)} samples/s at batch {g.first('batch_size')}: "
            f"{fmt(g.mean / r.mean, 3)}× ({evals} sequential network evaluations against 1)"
        )
    text = "; ".join(parts) + " (one image size only)."
    return Answer(text, "Supported at this size; how the gap grows with image size is not measured in this run.")


# ----------------------------------------------------------------------------- (b) bias and consistency


def toy_groups(evidence: Evidence) -> list[tuple[str, Group]]:
    """(table, group) of the finished toy-2D groups; the table names the mixture (`toy2d (mixture=ring8)`), which
    is not among a group's settings."""
    return [(t, g) for t, groups in evidence.tables.items() for g in groups if g.dataset == "toy2d" and g.ok_runs]


def toy_tables(evidence: Evidence) -> list[str]:
    """The toy-2D tables (one per mixture), in the order first seen."""
    return list(dict.fromkeys(t for t, _ in toy_groups(evidence)))


def capacity_key(group: Group) -> str | None:
    """The swept setting that sets a toy model's capacity (a width), if the group has one."""
    return next((k for k in group.settings if "width" in k or "hidden" in k or k.endswith("couplings")), None)


# Settings that say how a run was recorded, not what was trained: they never tell two lines of a sweep apart.
BOOKKEEPING = ("train.keep_snapshots", "train.checkpoint_every")


def setting_text(key: str, value: Any) -> str:
    return f", {key.split('.', 1)[1]}={value}"


def line_name(head: str, group: Group, swept: str) -> str:
    """`head` and the group's settings other than the swept one: one line of a sweep per objective and data."""
    return head + "".join(setting_text(k, v) for k, v in group.settings.items() if k != swept)


def sweeps_only(lines: Series) -> Series:
    """The lines that are sweeps: at least two distinct values of the swept setting. A run of another experiment
    that happens to carry the setting (a convergence run at the default width) is a point, not a line. Settings
    that only say how a run was recorded leave a line's name where the names stay distinct."""
    kept = {k: sorted(v) for k, v in lines.items() if len({x for x, _, _ in v}) >= 2}
    shown = dict(kept)
    for key in BOOKKEEPING:
        for value in (False, True, None):
            shown = {k.replace(setting_text(key, value), ""): v for k, v in shown.items()}
    return shown if len(shown) == len(kept) else kept


def capacity_series(evidence: Evidence) -> Series:
    """KL-to-truth (mean, std over seeds) against capacity, one line per model, training objective and mixture."""
    lines: Series = {}
    for table, g in toy_groups(evidence):
        key = capacity_key(g)
        kl = metric_means(g, "kl_to_truth", source="model")
        if key is None or kl is None:
            continue
        name = line_name(g.model, g, key) + (f" on {table}" if table != g.dataset else "")
        lines.setdefault(name, []).append((float(g.settings[key]), kl[0], kl[1]))
    return sweeps_only(lines)


def kl_floors(evidence: Evidence) -> dict[str, tuple[float, float | None, int]]:
    """Per toy table, the real-data floor of a KDE-scored KL (mean, std and count over the runs that recorded it):
    the KDE a sampler is scored by, fitted to draws of the truth, so what a perfect sampler would score."""
    values: dict[str, list[float]] = {}
    for table, g in toy_groups(evidence):
        for ms in candidates(g, "kl_to_truth", source="data"):
            values.setdefault(table, []).extend(m["value"] for m in ms)
    return {t: (*mean_std(v), len(v)) for t, v in values.items()}


def bound_gaps(evidence: Evidence) -> list[tuple[str, float, float]]:
    """(group, ELBO - longest IWAE in nats, KL to truth) of the toy VAEs: how loose the bound is beside how far
    the model is (the longest IWAE stands in for the model's true likelihood)."""
    out = []
    for table, g in toy_groups(evidence):
        if g.family != "variational":
            continue
        by_method = {ms[0].get("method"): ms for ms in variants(g, "nll_nats").values()}
        iwae = [m for m in by_method if m and m.startswith("iwae-")]
        kl = metric_means(g, "kl_to_truth", source="model")
        if "elbo" in by_method and iwae and kl:
            longest = max(iwae, key=lambda m: int(m[5:]))
            gap = statistics.fmean(by_method["elbo"][i]["value"] - m["value"] for i, m in enumerate(by_method[longest]))
            out.append((f"{g.label} on {table} ({longest})", gap, kl[0]))
    return out


def iwae_order(method: str) -> tuple[int, int]:
    """ELBO, then IWAE-k by increasing k, then AIS: the order in which the bounds should tighten."""
    if method == "elbo":
        return (0, 0)
    if method.startswith("iwae-") and method[5:].isdigit():
        return (1, int(method[5:]))
    return (2, 0) if method == "ais" else (3, 0)


def bound_chain(group: Group) -> str | None:
    """A VAE's bounds on its discrete data from ELBO to IWAE-k to AIS, with gaps paired by seed (bits/dim)."""
    per_seed: dict[str, dict[int, float]] = {}
    n_examples: dict[str, int | None] = {}
    for ms in variants(group, "nll_bpd").values():
        m = ms[0]
        if m["kind"] == "lower_bound" and agrees(m, "source", "model") and m.get("data") == "discrete":
            per_seed[m.get("method", "?")] = {x["seed"]: x["value"] for x in ms}
            n_examples[m.get("method", "?")] = m.get("n")
    methods = sorted((m for m in per_seed if iwae_order(m)[0] < 3), key=iwae_order)
    if not methods:
        return None
    values = ", ".join(f"{m} ≤ {mean_text(list(per_seed[m].values()))}" for m in methods)
    gaps = []
    for a, b in zip(methods, methods[1:], strict=False):
        paired = [per_seed[a][s] - per_seed[b][s] for s in per_seed[a] if s in per_seed[b]]
        if paired:
            na, nb = n_examples[a], n_examples[b]
            subsets = f" (on {na} and {nb} test examples)" if na != nb else ""
            gaps.append(f"{a} → {b} {mean_text(paired)}{subsets}")
    text = f"{group.label} on {group.dataset}: bits/dim {values}"
    if gaps:
        text += f"; gaps paired by seed (positive = the later bound is tighter): {'; '.join(gaps)}"
    return text + "".join(f"; {name}: {NOT_MEASURED}" for name, order in (("iwae-k", 1), ("ais", 2))
                          if all(iwae_order(m)[0] != order for m in methods))  # fmt: skip


def on_table(line: str, table: str) -> bool:
    """Whether a capacity line is of `table`: a line names its table unless the table is the bare dataset."""
    return line.endswith(f" on {table}") or "(" not in table


def table_verdict(
    evidence: Evidence, table: str, best: dict[str, float], floors: dict[str, tuple[float, float | None, int]]
) -> str | None:
    """On one mixture: the best GAN against the best VAE (each at its best capacity), the GAN's KL beside its
    estimator's floor; then what training on the ELBO costs against a tighter objective and an exact likelihood."""
    lines = {line: kl for line, kl in best.items() if on_table(line, table)}

    def of(family: str) -> list[str]:
        return [line for line in lines if line.startswith(tuple(g.model for g in evidence.of_family(family)))]

    adversarial, variational, flows = of("adversarial"), of("variational"), of("flow")
    if not (adversarial and variational):
        return None
    a, v = min(adversarial, key=lines.get), min(variational, key=lines.get)
    closer = "closer to" if lines[a] < lines[v] else "no closer to"
    floor = floors.get(table)
    against = f" (its estimator's floor on true draws: {fmt(floor[0], 3)})" if floor else ""
    text = (
        f"On {table}, at its best capacity the GAN ({a}, KL {fmt(lines[a], 3)}) comes {closer} the truth than the "
        f"best VAE ({v}, {fmt(lines[v], 3)}); the GAN's KL is a kernel estimate from its samples{against}, the "
        f"VAE's uses its bound."
    )
    elbo = [line for line in variational if setting_text("model.train_k", 1) in line]
    tighter = [line for line in variational if line not in elbo]
    if elbo and (tighter or flows):
        e = min(elbo, key=lines.get)
        named = [x for x in (min(tighter, key=lines.get, default=None), min(flows, key=lines.get, default=None)) if x]
        word = "costs" if all(lines[e] > lines[x] for x in named) else "does not cost"
        others = " and ".join(f"{x} {fmt(lines[x], 3)}" for x in named)
        text += f" Training on the ELBO {word}: its best KL is {fmt(lines[e], 3)} against {others}."
    return text


def bias_and_consistency(evidence: Evidence) -> Answer:
    series = capacity_series(evidence)
    # the image VAE with the most seeds: one chain of bounds, not one per point of a latent-size sweep
    on_images = [g for g in evidence.of_family("variational") if g.dataset != "toy2d"]
    richest = max(on_images, key=lambda g: len(g.ok_runs), default=None)
    chains_of_bounds = [t for t in [bound_chain(richest) if richest else None] if t]
    if not series:
        if chains_of_bounds:
            return Answer(
                "; ".join(chains_of_bounds) + ".",
                "How loose the VAE's bound is, measured; its bias against a consistent GAN needs the toy-2D capacity "
                "sweep (KL to a known density), not measured in this run.",
            )
        return missing("needs KL-to-truth of toy-2D models at several capacities (make claims)")
    parts = [
        f"{line}: " + ", ".join(f"{fmt(x, 3)} → {fmt(m, 3)}" + (f" ± {fmt(s, 2)}" if s is not None else "")
                                for x, m, s in pts)
        for line, pts in series.items()
    ]  # fmt: skip
    text = "KL to the true density (nats) against capacity: " + "; ".join(parts) + "."
    floors = kl_floors(evidence)
    if floors:
        text += (
            " A sampler's KL is a KDE on its samples; the same KDE on draws of the truth (the real-data floor, what "
            "a perfect sampler would score) gives "
            + ", ".join(f"{fmt(m, 3)}" + (f" ± {fmt(s, 2)}" if s else "") + f" on {t}"
                        for t, (m, s, _) in floors.items())
            + "."
        )  # fmt: skip
    if chains_of_bounds:
        text += " " + "; ".join(chains_of_bounds) + "."
    gaps = bound_gaps(evidence)
    if gaps:
        text += (
            " The VAE's ELBO is below its long-IWAE likelihood by "
            + ", ".join(f"{fmt(gap, 3)} nats ({name}, KL {fmt(kl, 3)})" for name, gap, kl in gaps)
            + "."
        )
    best = {line: min(m for _, m, _ in pts) for line, pts in series.items()}
    verdicts = [v for t in toy_tables(evidence) if (v := table_verdict(evidence, t, best, floors))]
    verdict = " ".join(verdicts) if verdicts else "Only one of the two families was measured."
    return Answer(text, verdict)


# ----------------------------------------------------------------------------- (c) DBMs


def partition_series(group: Group) -> list[tuple[float, float, float | None]]:
    """log Z (mean over seeds, and the mean of each run's AIS standard error) against schedule length."""
    out = []
    for ms in variants(group, "log_partition").values():
        errs = [m["stderr"] for m in ms if m.get("stderr") is not None]
        out.append((float(ms[0]["ais_betas"]), statistics.fmean(m["value"] for m in ms), max(errs) if errs else None))
    return sorted(out)


def gap_series(group: Group) -> list[tuple[float, float, float | None]]:
    """The mean-field bound's gap (nats per example, a lower bound on it; mean and std over seeds) against the
    importance samples that measured it."""
    return sorted(
        (float(ms[0]["samples"]), *mean_std([m["value"] for m in ms]))
        for ms in variants(group, "mean_field_gap").values()
    )


def mode_series(group: Group, name: str) -> list[tuple[float, float, float | None]]:
    """`name` (a quality metric or samples/s) against sequential network evaluations, one point per mode; the
    default mode is left out where a named mode takes as many evaluations (the GSN's default is its burn100)."""
    features = table_features([group], ["fid"])
    evaluations = group.info.get("network_evaluations") or {}
    modes = group.info.get("sampling_modes") or []
    named = {evaluations.get(m) for m in modes if m != "default"}
    out = []
    for mode in modes:
        if mode == "default" and evaluations.get(mode) in named:
            continue
        cell = (
            throughput_cell(group, mode=mode)
            if name == "sample_throughput"
            else quality_cell(group, name, features, mode=mode)
        )
        if cell.mean is not None and mode in evaluations:
            out.append((float(evaluations[mode]), cell.mean, cell.std))
    return sorted(out)


def boltzmann(evidence: Evidence) -> Answer:
    dbms = [g for g in evidence.of_family("boltzmann") if g.ok_runs]
    if not dbms:
        return missing("no Boltzmann machine's runs")
    g = dbms[0]
    log_z, fid, speed = partition_series(g), mode_series(g, "fid"), mode_series(g, "sample_throughput")
    parts = []
    settled = None
    if log_z:
        parts.append("AIS log Z against temperatures: " + ", ".join(
            f"{int(b)}: {fmt(v)}" + (f" (± {fmt(e, 2)})" if e is not None else "") for b, v, e in log_z))  # fmt: skip
        for (b0, v0, e0), (_, v1, e1) in zip(log_z, log_z[1:], strict=False):
            if abs(v1 - v0) <= 2 * max(e0 or 0, e1 or 0):
                settled = settled or int(b0)
    gap = gap_series(g)
    if gap:
        points = ", ".join(f"{int(k)}: {fmt(m, 3)}" for k, m, _ in gap)
        parts.append("the mean-field bound's gap to log p*(v) (nats per test example, at least; importance samples "
                     f"of h2 with h1 summed out): {points}")  # fmt: skip
    if fid:
        parts.append("FID against Gibbs sweeps: " + ", ".join(f"{int(x)}: {fmt(m, 3)}" for x, m, _ in fid))
    if speed:
        parts.append("samples/s: " + ", ".join(f"{int(x)}: {fmt(m, 3)}" for x, m, _ in speed))
    estimate = next((ms[0] for ms in variants(g, "nll_bpd").values() if ms[0]["kind"] == "estimate"), None)
    if estimate:
        parts.append(f"its likelihood is a mean-field bound minus an AIS log Z: ≈ {fmt(estimate['value'])} bits/dim "
                     f"on {estimate.get('data', 'its')} data, labelled an estimate")  # fmt: skip
    if not parts:
        return missing(f"{g.label} records carry no log Z schedule, chain-length FID or likelihood")
    settle = f"log Z settles (within 2 standard errors) from {settled} temperatures on" if settled else (
        "log Z has not settled over the schedules measured")  # fmt: skip
    cost = ""
    if len(speed) > 1:
        (x0, v0, _), (x1, v1, _) = speed[0], speed[-1]
        cost = f"; sampling slows {fmt(v0 / v1, 3)}× from {int(x0)} to {int(x1)} sweeps"
    bound = ""
    if gap:
        k, m, _ = gap[-1]
        bound = f"; the mean-field bound sits at least {fmt(m, 3)} nats per example below log p*(v) ({int(k)} samples)"
    return Answer(f"{g.label}: " + "; ".join(parts) + ".", f"Supported: {settle}{bound}{cost}.")


# ----------------------------------------------------------------------------- (d) GSNs


def chains(evidence: Evidence) -> Answer:
    gsns = [g for g in evidence.of_family("markov_chain") if g.ok_runs]
    if not gsns:
        return missing("no GSN's runs")
    g = gsns[0]
    fid, recall, speed = mode_series(g, "fid"), mode_series(g, "recall"), mode_series(g, "sample_throughput")
    visited = sorted(
        (ms[0]["steps"], statistics.fmean(m["value"] for m in ms)) for ms in variants(g, "classes_visited").values()
    )
    parts = []
    for title, series in (("FID", fid), ("recall", recall), ("samples/s", speed)):
        if series:
            parts.append(f"{title} against chain steps: " + ", ".join(f"{int(x)}: {fmt(m, 3)}" for x, m, _ in series))
    if visited:
        parts.append("classes one chain visits: " + ", ".join(f"{fmt(v, 2)} in {s} steps" for s, v in visited))
    if not parts:
        return missing(f"{g.label} records carry no chain-length metrics")
    verdict = "Supported: samples come from a Markov chain"
    if len(fid) > 1:
        (x0, f0, _), (x1, f1, _) = fid[0], fid[-1]
        better = "improves" if f1 < f0 else "worsens"
        verdict += f", whose FID {better} from {fmt(f0, 3)} to {fmt(f1, 3)} over {int(x0)}–{int(x1)} steps"
    if visited:
        steps, classes = visited[-1]
        verdict += f", and one chain visits {fmt(classes, 2)} classes in {steps} steps"
    return Answer("; ".join(parts) + ".", verdict + ".")


# ----------------------------------------------------------------------------- (e) latent size


def latent_series(evidence: Evidence, name: str = "fid") -> Series:
    """`name` against latent size for the swept adversarial and variational models (image data)."""
    lines: Series = {}
    for g in evidence.groups:
        if g.family not in ("adversarial", "variational") or "model.latent_dim" not in g.settings or not g.ok_runs:
            continue
        if name == "fid":
            cell = quality_cell(g, "fid", table_features([g], ["fid"]))
            value = (cell.mean, cell.std) if cell.mean is not None else None
        else:
            found = [ms for ms in variants(g, name).values() if agrees(ms[0], "source", "model")
                     and ms[0].get("data") == "discrete"]  # fmt: skip
            best = min(found, key=lambda ms: statistics.fmean(m["value"] for m in ms), default=None)
            value = mean_std([m["value"] for m in best]) if best else None
        if value is not None:
            line = line_name(f"{g.model} ({g.dataset})", g, "model.latent_dim")
            lines.setdefault(line, []).append((float(g.settings["model.latent_dim"]), *value))
    return sweeps_only(lines)


def latent_size(evidence: Evidence) -> Answer:
    flows = [g for g in evidence.of_family("flow") if g.info.get("latent_dim") is not None]
    # one entry per model and data size: a flow's width sweep does not change its latent size
    fixed = "; ".join(dict.fromkeys(f"{g.model} {g.info['latent_dim']} for D = {data_dim(g)}" for g in flows))
    series = latent_series(evidence)
    if not series:
        if not flows:
            return missing("needs a flow's record or a latent-size sweep of a GAN or VAE (make claims)")
        return Answer(f"latent size of the flows: {fixed}.", "Flows cannot choose: latent size equals data size; "
                      "what a chosen latent costs the others is not measured in this run.")  # fmt: skip
    parts = [f"{line} FID: " + ", ".join(f"z={int(x)}: {fmt(m, 3)}" for x, m, _ in pts) for line, pts in series.items()]
    bits = latent_series(evidence, "nll_bpd")
    parts += [
        f"{line} bits/dim: " + ", ".join(f"z={int(x)}: {fmt(m, 3)}" for x, m, _ in pts) for line, pts in bits.items()
    ]
    best = {line: min(pts, key=lambda p: p[1]) for line, pts in series.items()}
    verdict = (
        "Flows have no choice ("
        + (fixed or "no flow recorded")
        + "); "
        + "; ".join(f"{line} is best at z = {int(p[0])} (FID {fmt(p[1], 3)})" for line, p in best.items())
        + "."
    )
    return Answer("; ".join(parts) + (f"; flows: {fixed}" if fixed else "") + ".", verdict)


# ----------------------------------------------------------------------------- (f) convergence


def progress_runs(evidence: Evidence, name: str) -> dict[str, dict[str, dict[int, list[tuple[float, float]]]]]:
    """The model's `name` over training steps, by table, group and seed: {seed: [(step, value), ...]}."""
    out: dict[str, dict[str, dict[int, list[tuple[float, float]]]]] = {}
    for table, groups in evidence.tables.items():
        for g in groups:
            by_seed: dict[int, list[tuple[float, float]]] = {}
            for ms in candidates(g, name, source="model"):  # never a real-data floor among the model's points
                for m in ms:
                    by_seed.setdefault(m["seed"], []).append((float(m["step"]), m["value"]))
            if by_seed:
                out.setdefault(table, {})[g.label] = {seed: sorted(pts) for seed, pts in sorted(by_seed.items())}
    return out


def progress_series(evidence: Evidence, name: str) -> dict[str, dict[str, list[tuple[float, float, float | None]]]]:
    """`name` over training steps (mean, std over seeds), by table and group."""
    out: dict[str, dict[str, list]] = {}
    for table, lines in progress_runs(evidence, name).items():
        for label, by_seed in lines.items():
            by_step: dict[float, list[float]] = {}
            for pts in by_seed.values():
                for step, value in pts:
                    by_step.setdefault(step, []).append(value)
            out.setdefault(table, {})[label] = [(s, *mean_std(v)) for s, v in sorted(by_step.items())]
    return out


def relapses(
    evidence: Evidence, name: str, rise: float = 0.05
) -> tuple[int, list[tuple[str, int, float, float, float]]]:
    """Runs whose last snapshot of `name` (lower is better) is more than `rise` above their best one: the run
    count, and (line, seed, best step, best, last) of each that relapsed, the largest relapse first. Per run, not
    per mean: seeds that relapse at different steps would cancel in a mean."""
    runs, found = 0, []
    for table, lines in progress_runs(evidence, name).items():
        for label, by_seed in lines.items():
            for seed, pts in by_seed.items():
                runs += 1
                step, best = min(pts, key=lambda p: p[1])
                last = pts[-1][1]
                if last > best + rise * abs(best):
                    found.append((f"{label} on {table}", seed, step, best, last))
    return runs, sorted(found, key=lambda r: r[3] - r[4])


def mode_changes(evidence: Evidence) -> dict[str, tuple[float, float, int]]:
    """Per toy line, from the covered modes (`covered`) of consecutive snapshots: modes dropped (covered at one
    snapshot, not at the next) and hops (a drop matched by another mode gained at the same snapshot), each the
    mean per run, and the run count. A collapse drops modes; a sampler that hops keeps its count and moves."""
    out = {}
    for table, groups in evidence.tables.items():
        for g in groups:
            by_seed: dict[int, list[tuple[float, set[int]]]] = {}
            for ms in candidates(g, "modes_covered_over_training"):
                for m in ms:
                    if "covered" in m:
                        by_seed.setdefault(m["seed"], []).append((float(m["step"]), set(m["covered"])))
            if not by_seed:
                continue
            dropped, hops = [], []
            for pts in by_seed.values():
                sets = [covered for _, covered in sorted(pts, key=lambda p: p[0])]
                pairs = list(zip(sets, sets[1:], strict=False))
                dropped.append(sum(len(a - b) for a, b in pairs))
                hops.append(sum(min(len(a - b), len(b - a)) for a, b in pairs))
            out[f"{g.label} on {table}"] = (statistics.fmean(dropped), statistics.fmean(hops), len(by_seed))
    return out


def adversarial_losses(evidence: Evidence) -> dict[str, dict[str, list[tuple[float, float, float | None]]]]:
    """The logged losses (discriminator and generator) of the GANs tracked over training, by group: each scalar's
    mean and std over seeds at the steps every seed logged."""
    out: dict[str, dict[str, list]] = {}
    tracked = {label for lines in progress_runs(evidence, "fid_over_training").values() for label in lines}
    for g in evidence.of_family("adversarial"):
        if g.label not in tracked:
            continue
        per_run = [scalar_curves(run) for run in g.ok_runs]
        for scalar in [n for n in (per_run[0] if per_run else {}) if n.endswith("loss")]:
            curves = [dict(zip(*c[scalar], strict=True)) for c in per_run if scalar in c]
            shared = sorted(set.intersection(*(set(c) for c in curves)))
            out.setdefault(g.label, {})[scalar] = [(s, *mean_std([c[s] for c in curves])) for s in shared]
    return out


def reversals(points: list[tuple[float, float, float | None]], lower_is_better: bool = True) -> int:
    """How often the curve got worse from one snapshot to the next (by more than 5%)."""
    sign = 1 if lower_is_better else -1
    return sum(1 for (_, a, _), (_, b, _) in zip(points, points[1:], strict=False) if sign * (b - a) > 0.05 * abs(a))


def convergence(evidence: Evidence) -> Answer:
    fid = progress_series(evidence, "fid_over_training")
    modes = progress_series(evidence, "modes_covered_over_training")
    if not fid and not modes:
        return instability_from_seeds(evidence)
    parts, worse, fell = [], [], []
    for table, lines in fid.items():
        for label, pts in lines.items():
            spread = pts[-1][2]
            parts.append(f"{label} on {table}: FID {fmt(pts[0][1], 3)} at step {int(pts[0][0])} → {fmt(pts[-1][1], 3)}"
                         f"{f' ± {fmt(spread, 2)}' if spread is not None else ''} at {int(pts[-1][0])}, "
                         f"{reversals(pts)} setbacks")  # fmt: skip
            worse.append((label, reversals(pts)))
    for table, lines in modes.items():
        for label, pts in lines.items():
            peak = max(m for _, m, _ in pts)
            fell.append((f"{label} on {table}", peak, pts[-1][1]))
            parts.append(f"{label} on {table}: modes covered " + ", ".join(f"{int(s)}: {fmt(m, 2)}" for s, m, _ in pts)
                         + ("" if pts[-1][1] >= peak else f" (fell from its peak {fmt(peak, 2)})"))  # fmt: skip
    floors = kl_floors(evidence)
    for table, lines in progress_series(evidence, "kl_to_truth_over_training").items():
        for label, pts in lines.items():
            step, best, _ = min(pts, key=lambda p: p[1])
            floor = f" (floor {fmt(floors[table][0], 2)})" if table in floors else ""
            first, last = pts[0], pts[-1]
            parts.append(f"{label} on {table}: KL to truth {fmt(first[1], 3)} at step {int(first[0])}, "
                         f"best {fmt(best, 3)} at {int(step)}, {fmt(last[1], 3)} at {int(last[0])}{floor}")  # fmt: skip
    adversarial = {g.label for g in evidence.of_family("adversarial")}
    gan_setbacks = [n for label, n in worse if label in adversarial]
    other_setbacks = [n for label, n in worse if label not in adversarial]
    verdict = (
        f"GAN FID curves had {sum(gan_setbacks)} setbacks over {len(gan_setbacks)} runs' means"
        + (f", the likelihood models' {sum(other_setbacks)} over {len(other_setbacks)}" if other_setbacks else "")
        + "; a setback is a rise of more than 5% between snapshots."
    )
    lost = [(line, peak, last) for line, peak, last in fell if last < peak]
    if fell:
        verdict += (
            f" On the toy mixtures {len(lost)} of {len(fell)} mode-coverage curves (means over seeds) end below "
            f"their peak"
            + (": " + "; ".join(f"{line} {fmt(peak, 2)} → {fmt(last, 2)}" for line, peak, last in lost) if lost else "")
            + "."
        )
    changes = mode_changes(evidence)
    if changes:
        verdict += (
            " Between snapshots the runs dropped modes they had covered (mean per run; hops: drops matched by a "
            "mode gained at the same snapshot): "
            + "; ".join(f"{line} {fmt(d, 2)} dropped, {fmt(h, 2)} hops" for line, (d, h, _) in changes.items())
            + "."
        )
    runs, relapsed = relapses(evidence, "kl_to_truth_over_training")
    if runs:
        verdict += (
            f" {len(relapsed)} of {runs} toy runs end more than 5% farther from the truth (KL) than at their best "
            "snapshot"
        )
        if relapsed:
            line, seed, step, best, last = relapsed[0]
            verdict += (
                f", the most {line}, seed {seed}: {fmt(best, 3)} nats at step {int(step)}, {fmt(last, 3)} at the end"
            )
        verdict += "."
    return Answer("; ".join(parts) + ".", verdict)


def instability_from_seeds(evidence: Evidence) -> Answer:
    """Without snapshots: the spread of the final FID over seeds, GAN first."""
    gans = [g for g in evidence.of_family("adversarial") if len(g.ok_runs) >= 2]
    if not gans:
        return missing("needs FID over training (train.keep_snapshots, make claims) or 2 seeds of a GAN")
    parts = []
    for g in gans + [g for g in evidence.groups if g.dataset == gans[0].dataset and g not in gans]:
        cell = quality_cell(g, "fid", table_features([g], ["fid"]))
        if cell.n >= 2 and cell.mean and cell.std is not None:
            parts.append(f"{g.label} FID {fmt(cell.mean)} ± {fmt(cell.std, 2)}, CV {cell.std / cell.mean:.0%}")
    curves = [c for c in map(loss_curve, gans[0].ok_runs) if c]
    if len(curves) >= 2:
        parts.append(f"{gans[0].label} final {curves[0][0]} {mean_text([c[2][-1] for c in curves])}")
    return Answer("across seeds: " + "; ".join(parts) + ".", "The final spread over seeds alone cannot show "
                  "non-convergence; FID over training is not measured in this run.")  # fmt: skip


# ----------------------------------------------------------------------------- diffusion's step count


def diffusion_steps(evidence: Evidence) -> Answer:
    """How many network evaluations a diffusion sample needs to reach the GAN's FID, and what they cost."""
    pairs = [
        (d, g)
        for d in evidence.of_family("diffusion")
        for g in evidence.of_family("adversarial", d.dataset)
        if d.ok_runs and g.ok_runs and not g.settings
    ]
    if not pairs:
        return missing("needs a diffusion model's and a GAN's runs on one dataset")
    diffusion, gan = pairs[0]
    features = table_features([diffusion, gan], ["fid"])
    target, gan_speed = quality_cell(gan, "fid", features), throughput_cell(gan)
    evaluations = diffusion.info.get("network_evaluations") or {}
    points = []  # (evaluations, mode, FID, samples/s)
    for mode in diffusion.info.get("sampling_modes") or []:
        fid = quality_cell(diffusion, "fid", features, mode=mode)
        if fid.mean is not None and mode in evaluations:
            points.append((int(evaluations[mode]), mode, fid.mean, throughput_cell(diffusion, mode=mode).mean))
    if target.mean is None or not points:
        return missing(f"{diffusion.label} or {gan.label} records carry no FID on shared features")
    points.sort()
    text = f"{diffusion.label} FID ({features}) against network evaluations per sample: " + "; ".join(
        f"{n} ({mode}): {fmt(f, 3)}" + (f", {fmt(s, 3)} samples/s" if s else "") for n, mode, f, s in points
    )
    text += f". {gan.label}: FID {fmt(target.mean, 3)}, 1 evaluation" + (
        f", {fmt(gan_speed.mean, 3)} samples/s" if gan_speed.mean else ""
    )
    reached = [p for p in points if p[2] <= target.mean]
    if not reached:
        n, mode, f, _ = min(points, key=lambda p: p[2])
        verdict = (
            f"At the step counts measured the diffusion model does not reach the GAN's FID: its best is "
            f"{fmt(f, 3)} at {n} network evaluations per sample ({mode})."
        )
    else:
        n, mode, f, speed = reached[0]
        cost = f", sampling {fmt(gan_speed.mean / speed, 3)}× slower than the GAN" if speed and gan_speed.mean else ""
        verdict = (
            f"The diffusion model reaches the GAN's FID ({fmt(target.mean, 3)}) at {n} network evaluations per "
            f"sample ({mode}: FID {fmt(f, 3)}){cost}."
        )
    return Answer(text + ".", verdict)


# ----------------------------------------------------------------------------- the section

CLAIMS: tuple[tuple[str, str, str, Callable[[Evidence], Answer]], ...] = (
    ("a", "One pass vs pixel by pixel", "a GAN draws a sample in one pass; PixelRNN/PixelCNN generate pixel by pixel.",
     one_pass_sampling),
    ("b", "The VAE's bound and the GAN's consistency", "the VAE's bound makes it biased; a GAN is asymptotically "
     "consistent.", bias_and_consistency),
    ("c", "Boltzmann machines", "DBMs need a variational bound, an intractable partition function and Markov-chain "
     "sampling.", boltzmann),
    ("d", "GSNs", "GSNs need Markov chains.", chains),
    ("e", "Flows' latent size", "NICE/RealNVP's latent size equals the data size.", latent_size),
    ("f", "GAN convergence", "GAN training may not converge.", convergence),
    ("g", "Diffusion's step count", "a diffusion model samples by many denoising steps; its quality depends on "
     "how many network evaluations it spends per sample.", diffusion_steps),
)  # fmt: skip


def claims_markdown(evidence: Evidence, figures: dict[str, str] | None = None) -> list[str]:
    """The section's Markdown lines: per claim its numbers, verdict and figure (when one was drawn)."""
    figures = figures or {}
    lines = ["## What the seed says, measured", ""]
    for key, title, claim, measure in CLAIMS:
        answer = measure(evidence)
        lines += [f"### ({key}) {title}", "", f"Claim: {claim}", "", f"Measured: {answer.text}", ""]
        if answer.verdict:
            lines += [f"**Verdict:** {answer.verdict}", ""]
        if key in figures:
            lines += [f"![{title}]({figures[key]}.png)", ""]
    return lines
