"""The report's section "What the seed says, measured": claims of Goodfellow's GAN Q&A against this run's records.

Each claim is answered with numbers from the records, or with "not measured in this run" and what is lacking.
The claims concern model families (the seed compares GANs with pixel-by-pixel models, VAEs and flows); a model's
family and its sequential network evaluations per sample come from its record (`model_info`, written by
`GenerativeModel.describe()`), so a new autoregressive model or flow joins the claims without an edit here.

References:
    Goodfellow 2016, "NIPS 2016 Tutorial: Generative Adversarial Networks", sections 2-3 (GANs draw a sample in
        one pass where PixelCNN goes pixel by pixel; flows need a latent as large as the data; the VAE's bound;
        GAN training is unstable).
    Burda, Grosse, Salakhutdinov 2016 (IWAE); Wu, Burda, Salakhutdinov, Grosse 2017 (AIS for decoders).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from genbench.report.cells import fmt, mean_text
from genbench.report.records import Group, data_dim, loss_curve, variants
from genbench.report.tables import quality_cell

NOT_MEASURED = "not measured in this run"


def of_family(groups: list[Group], family: str) -> list[Group]:
    return [g for g in groups if g.family == family]


def throughput_means(group: Group) -> dict[tuple, list[tuple[str, float]]]:
    """(device, batch, dtype) -> (mode, mean samples/s over seeds) for every mode measured there."""
    out: dict[tuple, list[tuple[str, float]]] = {}
    for ms in variants(group, "sample_throughput").values():
        m = ms[0]
        where = (m.get("device"), m.get("batch_size"), m.get("dtype"))
        out.setdefault(where, []).append((m.get("mode") or "default", statistics.fmean(x["value"] for x in ms)))
    return out


def evaluations_text(groups: list[Group]) -> str:
    """Sequential network evaluations per sample of every model in its default mode, from the records."""
    parts = []
    for g in groups:
        evaluations = (g.info.get("network_evaluations") or {}).get(g.default_mode)
        if evaluations is not None:
            parts.append(f"{g.label} {evaluations}")
    return f" Sequential network evaluations per sample (default mode): {', '.join(parts)}." if parts else ""


def one_pass_sampling(groups: list[Group]) -> str:
    gans, ars = of_family(groups, "adversarial"), of_family(groups, "autoregressive")
    if not gans or not ars:
        return f"{NOT_MEASURED} (needs sample_throughput of an adversarial and an autoregressive model)."
    gan = gans[0]
    gan_at, parts, said = throughput_means(gan), [], set()
    for ar in ars:
        ar_at = throughput_means(ar)
        common = [k for k in ar_at if k in gan_at]
        if not common:
            why = f"no throughput on the same device, batch and dtype as {gan.label}"
            parts.append(f"{ar.label}: {NOT_MEASURED} ({why})")
            continue
        where = max(common, key=lambda k: k[1] or 0)
        g = max(v for _, v in gan_at[where])
        if where not in said:  # name the GAN's number once per device and batch
            parts.append(f"on {where[0]}, batch {where[1]}: {gan.label} {fmt(g)} samples/s")
            said.add(where)
        for mode, v in ar_at[where]:
            parts.append(f"{ar.label} ({mode}) {fmt(v)} samples/s, so the GAN is {fmt(g / v, 3)}× faster")
    return "; ".join(parts) + "." + evaluations_text(groups)


def iwae_order(method: str) -> tuple[int, int]:
    """ELBO, then IWAE-k by increasing k, then AIS: the order in which the bounds should tighten."""
    if method == "elbo":
        return (0, 0)
    if method.startswith("iwae-") and method[5:].isdigit():
        return (1, int(method[5:]))
    return (2, 0) if method == "ais" else (3, 0)


def vae_bound_gap(groups: list[Group]) -> str:
    vaes = of_family(groups, "variational")
    if not vaes:
        return f"{NOT_MEASURED} (no variational model's runs)."
    vae = vaes[0]
    per_seed: dict[str, dict[int, float]] = {}
    n_examples: dict[str, int | None] = {}
    for ms in variants(vae, "nll_bpd").values():
        if ms[0]["kind"] == "lower_bound":
            method = ms[0].get("method", "?")
            per_seed[method] = {m["seed"]: m["value"] for m in ms}
            n_examples[method] = ms[0].get("n")
    methods = sorted((m for m in per_seed if iwae_order(m)[0] < 3), key=iwae_order)
    if not methods:
        return f"{NOT_MEASURED} (the {vae.label} records have no ELBO, IWAE or AIS bits/dim)."
    values = ", ".join(f"{m} ≤ {mean_text(list(per_seed[m].values()))}" for m in methods)
    gaps = []
    for a, b in zip(methods, methods[1:], strict=False):
        paired = [per_seed[a][s] - per_seed[b][s] for s in per_seed[a] if s in per_seed[b]]
        if paired:
            na, nb = n_examples[a], n_examples[b]
            subsets = f" (on {na} and {nb} test examples)" if na != nb else ""
            gaps.append(f"{a} → {b} {mean_text(paired)}{subsets}")
    missing = [name for name, order in (("iwae-k", 1), ("ais", 2)) if all(iwae_order(m)[0] != order for m in methods)]
    gap_text = f"; gaps (bits/dim, paired by seed; positive = the later bound is tighter): {'; '.join(gaps)}"
    text = f"{vae.label} bits/dim {values}" + (gap_text if gaps else "")
    return text + "".join(f"; {m}: {NOT_MEASURED}" for m in missing) + "."


def latent_size(groups: list[Group]) -> str:
    parts, none = [], []
    for g in groups:
        latent, d = g.info.get("latent_dim"), data_dim(g)
        if latent is None or d is None:
            none.append(g.label)
            continue
        rel = "=" if latent == d else ("<" if latent < d else ">")
        parts.append(f"{g.label} {latent} {rel} {d}")
    if not any(g.label not in none for g in of_family(groups, "flow")):
        parts.append(f"flows: {NOT_MEASURED} (no flow's record states latent_dim)")
    tail = f"; no latent recorded: {', '.join(none)}" if none else ""
    return "latent size vs data size: " + "; ".join(parts) + tail + "."


def instability(groups: list[Group]) -> str:
    gans = [g for g in of_family(groups, "adversarial") if len(g.ok_runs) >= 2]
    if not gans:
        return f"{NOT_MEASURED} (needs at least 2 finished seeds of an adversarial model)."
    gan = gans[0]
    parts = []
    for g in sorted(groups, key=lambda g: g is not gan):
        feats = next((ms[0].get("features") for ms in variants(g, "fid").values()), None)
        cell = quality_cell(g, "fid", feats)
        if cell.n >= 2 and cell.mean is not None and cell.std is not None:
            cv = f", CV {cell.std / cell.mean:.0%}" if cell.mean > 0 else ""
            parts.append(f"{g.label} FID ({feats}) {fmt(cell.mean)} ± {fmt(cell.std, 2)}{cv}")
    curves = [c for c in map(loss_curve, gan.ok_runs) if c]
    if len(curves) >= 2:
        final = mean_text([c[2][-1] for c in curves])
        parts.append(f"{gan.label} final {curves[0][0]} {final} over {len(curves)} seeds")
    if not parts:
        return f"{NOT_MEASURED} (no FID or training curve across {gan.label} seeds)."
    return "across seeds: " + "; ".join(parts) + ". (CV = std / mean; with few seeds the spread is itself uncertain.)"


CLAIMS: tuple[tuple[str, str, Callable[[list[Group]], str]], ...] = (
    (
        "One pass vs pixel by pixel",
        "a GAN draws a sample with one pass of its generator; PixelCNN needs one network evaluation per pixel.",
        one_pass_sampling,
    ),
    (
        "The VAE's bound",
        "a VAE optimises a lower bound (ELBO); tighter bounds (IWAE-k, AIS) show how loose it is.",
        vae_bound_gap,
    ),
    (
        "Flows' latent size",
        "invertible flows (NICE, RealNVP) need a latent code as large as the data; VAEs and GANs choose theirs.",
        latent_size,
    ),
    (
        "GAN training instability",
        "GAN training is unstable: the same recipe lands in different places from different seeds.",
        instability,
    ),
)


def claims_markdown(groups: list[Group]) -> list[str]:
    """Markdown lines of the section for one dataset's groups."""
    lines = ["### What the seed says, measured", ""]
    for title, claim, measure in CLAIMS:
        lines.append(f"- **{title}.** Claim: {claim} Measured: {measure(groups)}")
    return [*lines, ""]
