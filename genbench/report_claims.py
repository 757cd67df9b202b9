"""The report's section "What the seed says, measured": claims of Goodfellow's GAN Q&A against this run's records.

Each claim is answered with numbers from the records, or with "not measured in this run" and what is lacking.
The claims concern named model families (the seed compares GANs with PixelCNN, VAEs and flows), so this module,
unlike the pipeline, looks models up by name.

References:
    Goodfellow 2016, "NIPS 2016 Tutorial: Generative Adversarial Networks", sections 2-3 (GANs draw a sample in
        one pass where PixelCNN goes pixel by pixel; flows need a latent as large as the data; the VAE's bound;
        GAN training is unstable).
    Burda, Grosse, Salakhutdinov 2016 (IWAE); Wu, Burda, Salakhutdinov, Grosse 2017 (AIS for decoders).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from genbench.report import Group, best_features, fmt, loss_curve, mean_std, variants

NOT_MEASURED = "not measured in this run"
AUTOREGRESSIVE = ("pixelcnn", "pixelrnn")
FLOWS = ("nice", "realnvp")


def data_dim(group: Group) -> int | None:
    """Number of dimensions of one example, from the record's `data` (DataSpec) field."""
    shape = next((r.record["data"].get("shape") for r in group.runs if r.record.get("data")), None)
    return math.prod(shape) if shape else None


def throughput_means(group: Group) -> dict[tuple, list[tuple[str, float]]]:
    """(device, batch, dtype) -> (mode, mean samples/s over seeds) for every mode measured there."""
    out: dict[tuple, list[tuple[str, float]]] = {}
    for ms in variants(group, "sample_throughput").values():
        m = ms[0]
        where = (m.get("device"), m.get("batch_size"), m.get("dtype"))
        out.setdefault(where, []).append((m.get("mode") or "default", statistics.fmean(x["value"] for x in ms)))
    return out


def one_pass_sampling(by_model: dict[str, Group], groups: list[Group]) -> str:
    gan, ars = by_model.get("gan"), [by_model[m] for m in AUTOREGRESSIVE if m in by_model]
    if gan is None or not ars:
        return f"{NOT_MEASURED} (needs sample_throughput of gan and of pixelcnn or pixelrnn)."
    gan_at, parts, said = throughput_means(gan), [], set()
    for ar in ars:
        ar_at = throughput_means(ar)
        common = [k for k in ar_at if k in gan_at]
        if not common:
            parts.append(f"{ar.model}: {NOT_MEASURED} (no throughput on the same device, batch and dtype as gan)")
            continue
        where = max(common, key=lambda k: k[1] or 0)
        g = max(v for _, v in gan_at[where])
        if where not in said:  # name the GAN's number once per device and batch
            parts.append(f"on {where[0]}, batch {where[1]}: gan {fmt(g)} samples/s")
            said.add(where)
        for mode, v in ar_at[where]:
            parts.append(f"{ar.model} ({mode}) {fmt(v)} samples/s, so the GAN is {fmt(g / v, 3)}× faster")
    d = data_dim(ars[0])
    names = " and ".join(g.model for g in ars)
    tail = f" ({names} evaluate a network once per pixel: {d} sequential steps per sample)" if d else ""
    return "; ".join(parts) + tail + "."


def iwae_order(method: str) -> tuple[int, int]:
    """ELBO, then IWAE-k by increasing k, then AIS: the order in which the bounds should tighten."""
    if method == "elbo":
        return (0, 0)
    if method.startswith("iwae-") and method[5:].isdigit():
        return (1, int(method[5:]))
    return (2, 0) if method == "ais" else (3, 0)


def vae_bound_gap(by_model: dict[str, Group], groups: list[Group]) -> str:
    vae = by_model.get("vae")
    if vae is None:
        return f"{NOT_MEASURED} (no vae runs)."
    per_seed: dict[str, dict[int, float]] = {}
    n_examples: dict[str, int | None] = {}
    for key, ms in variants(vae, "nll_bpd").items():
        if ms[0]["kind"] == "lower_bound":
            per_seed[dict(key).get("method", "?")] = {m["seed"]: m["value"] for m in ms}
            n_examples[dict(key).get("method", "?")] = ms[0].get("n")
    methods = sorted((m for m in per_seed if iwae_order(m)[0] < 3), key=iwae_order)
    if not methods:
        return f"{NOT_MEASURED} (the vae records have no ELBO, IWAE or AIS bits/dim)."
    values = ", ".join(f"{m} ≤ {_mean_text(list(per_seed[m].values()))}" for m in methods)
    gaps = []
    for a, b in zip(methods, methods[1:], strict=False):
        paired = [per_seed[a][s] - per_seed[b][s] for s in per_seed[a] if s in per_seed[b]]
        if paired:
            na, nb = n_examples[a], n_examples[b]
            subsets = f" (on {na} and {nb} test examples)" if na != nb else ""
            gaps.append(f"{a} → {b} {_mean_text(paired)}{subsets}")
    missing = [name for name, order in (("iwae-k", 1), ("ais", 2)) if all(iwae_order(m)[0] != order for m in methods)]
    gap_text = f"; gaps (bits/dim, paired by seed; positive = the later bound is tighter): {'; '.join(gaps)}"
    text = f"vae bits/dim {values}" + (gap_text if gaps else "")
    return text + "".join(f"; {m}: {NOT_MEASURED}" for m in missing) + "."


def latent_size(by_model: dict[str, Group], groups: list[Group]) -> str:
    parts, none = [], []
    for g in groups:
        latent, d = g.info.get("latent_dim"), data_dim(g)
        if latent is None or d is None:
            none.append(g.model)
            continue
        rel = "=" if latent == d else ("<" if latent < d else ">")
        parts.append(f"{g.model} {latent} {rel} {d}")
    if not any(g.model in FLOWS and g.model not in none for g in groups):
        parts.append(f"flows: {NOT_MEASURED} (no nice/realnvp record states latent_dim)")
    tail = f"; no latent recorded: {', '.join(none)}" if none else ""
    return "latent size vs data size: " + "; ".join(parts) + tail + "."


def instability(by_model: dict[str, Group], groups: list[Group]) -> str:
    gan = by_model.get("gan")
    if gan is None or len(gan.ok_runs) < 2:
        return f"{NOT_MEASURED} (needs at least 2 finished gan seeds)."
    parts = []
    for g in sorted(groups, key=lambda g: g is not gan):
        feats, ms = best_features(g, "fid")
        if len(ms) >= 2:
            mean, std = mean_std([m["value"] for m in ms])
            cv = f", CV {std / mean:.0%}" if mean > 0 and std is not None else ""
            parts.append(f"{g.model} FID ({feats}) {fmt(mean)} ± {fmt(std, 2)}{cv}")
    curves = [c for c in map(loss_curve, gan.ok_runs) if c]
    if len(curves) >= 2:
        parts.append(f"gan final {curves[0][0]} {_mean_text([c[2][-1] for c in curves])} over {len(curves)} seeds")
    if not parts:
        return f"{NOT_MEASURED} (no FID or training curve across gan seeds)."
    return "across seeds: " + "; ".join(parts) + ". (CV = std / mean; with few seeds the spread is itself uncertain.)"


def _mean_text(values: list[float]) -> str:
    mean, std = mean_std(values)
    return fmt(mean) + (f" ± {fmt(std, 2)}" if std is not None else " (1 seed)")


CLAIMS: tuple[tuple[str, str, Callable[[dict[str, Group], list[Group]], str]], ...] = (
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
    by_model = {g.model: g for g in groups}
    lines = ["### What the seed says, measured", ""]
    for title, claim, measure in CLAIMS:
        lines.append(f"- **{title}.** Claim: {claim} Measured: {measure(by_model, groups)}")
    return [*lines, ""]
