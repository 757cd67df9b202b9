"""Device-clean hot paths, checked without a GPU: every model's train_step and every sampling mode on the `meta`
device, under a dispatch-mode counter that fails on a device sync or a host-device copy; autocast on the CPU; the
device generators behind genbench.model.randn/rand."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from genbench.data import DataSpec
from genbench.errors import GenbenchError
from genbench.metrics.speed_timing import Traffic, device_traffic
from genbench.model import GenerativeModel, device_generator, randn

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
MODELS = sorted(p.stem for p in CONF.glob("*.yaml"))
# Tiny overrides, so the guard runs in seconds; a model without an entry runs at its yaml's sizes.
TINY: dict[str, dict[str, object]] = {
    "gan": {"width": 4, "latent_dim": 4},
    "vae": {"width": 4, "latent_dim": 2},
    "nice": {"hidden": 8, "n_hidden": 1},
    "realnvp": {"hidden": 4, "mlp_hidden": 8},
    # pretrain_steps=4: the counted steps 1..5 cover the bottom RBM, the top RBM, the first joint step (chain
    # burn-in) and a plain joint step
    "dbm": {"hidden1": 8, "hidden2": 4, "pretrain_steps": 4, "pcd_chains": 4, "pcd_steps": 1, "gibbs_steps": 3},
    "gsn": {"hidden_dim": 8, "burn_in": 3, "walkback": 2},
    "pixelcnn": {"channels": 4, "n_layers": 2, "head_channels": 4},
    "pixelrnn": {"hidden": 4, "output_hidden": 4},
}
IMAGES = DataSpec("tiny", (1, 8, 8), 256, (0.0, 1.0), 64, 64, "synthetic")
TOY = DataSpec("toy2d", (2,), None, (-3.0, 3.0), 64, 64, "synthetic")
# The only float64 a sampling loop may dispatch: the categorical draw of the autoregressive samplers (a (B, L)
# softmax and cumsum per sub-pixel in genbench.model.draw_categorical, with its uniforms), kept in double so that
# two code paths that compute the same logits draw the same level.
FLOAT64_ALLOWED = ("in draw_categorical", "models/pixelcnn.py")


def build(name: str, spec: DataSpec) -> GenerativeModel:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    module, cls = cfg.pop("_target_").rsplit(".", 1)
    cfg.pop("name")
    torch.manual_seed(0)
    try:
        return getattr(importlib.import_module(module), cls)(spec=spec, **{**cfg, **TINY.get(name, {})})
    except (GenbenchError, ValueError) as err:  # a model that refuses this data (pixel models on toy points)
        pytest.skip(f"{name} refuses {spec.name}: {err}")


def problems(traffic: Traffic, what: str, float64_ok: tuple[str, ...] = ()) -> list[str]:
    """What makes a GPU wait or copy, as `what: where` lines (empty when clean)."""
    bad = []
    for where, count in traffic.where.items():
        if where.endswith("float64") and any(ok in where for ok in float64_ok):
            continue
        bad.append(f"{what}: {count} x {where}")
    return bad


def assert_device_clean(
    model: GenerativeModel, spec: DataSpec, counted_steps: int = 5, every_mode: bool = True
) -> dict[str, Traffic]:
    """Run `train_step` and every sampling mode (or the default one) on the meta device; fail on any sync, copy
    or float64 op.

    The first training step is a warm-up: state a model keeps a host copy of (ActNorm's init flag, step counters)
    is read there once. Sampling gets a CPU generator, as the pipeline hands it.
    """
    meta = torch.device("meta")
    model.to(meta)
    model.configure_optimizers()
    x = torch.rand(4, *spec.shape, device=meta)
    model.train()
    with device_traffic():  # counted, not checked (and a scalar read on meta needs the counter's stand-in zero)
        model.train_step(x)
    traffic, bad = {}, []
    for i in range(counted_steps):
        with device_traffic() as t:
            model.train_step(x)
        traffic[f"train_step {i + 2}"] = t
        bad += problems(t, f"train_step {i + 2}")
    model.eval()
    generator = torch.Generator().manual_seed(0)
    for mode in model.sampling_modes if every_mode else model.sampling_modes[:1]:
        with torch.no_grad(), device_traffic() as t:
            model.sample(3, generator=generator, mode=mode)
        traffic[f"sample {mode}"] = t
        bad += problems(t, f"sample({mode})", FLOAT64_ALLOWED)
    assert not bad, "device syncs/copies/float64 in the hot path:\n" + "\n".join(bad)
    return traffic


@pytest.mark.parametrize("spec", [IMAGES, TOY], ids=["images", "toy2d"])
@pytest.mark.parametrize("name", MODELS)
def test_train_step_and_every_sampling_mode_are_device_clean(name: str, spec: DataSpec) -> None:
    # Toy data takes other code paths (MLPs, Gaussian noise) but the same modes, which differ only in chain
    # length: its default mode is enough, and keeps the meta device's slow Python kernels to a few seconds.
    traffic = assert_device_clean(build(name, spec), spec, every_mode=spec is IMAGES)
    assert all(t.ops > 0 for t in traffic.values())  # the counter saw the work


# ----------------------------------------------------------------------------- the guard catches regressions


class CleanDummy(GenerativeModel):
    """A diagonal Gaussian trained by maximum likelihood, written device-clean."""

    def __init__(self, spec: DataSpec) -> None:
        super().__init__(spec)
        self.mean = nn.Parameter(torch.zeros(spec.shape))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"sgd": torch.optim.SGD(self.parameters(), lr=0.1)}
        return self.optimizers

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        loss = ((x - self.mean) ** 2).mean()
        self.optimizers["sgd"].zero_grad()
        loss.backward()
        self.optimizers["sgd"].step()
        return {"loss": loss.detach()}

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        return self.mean + randn((n, *self.spec.shape), generator, self.device)


class ItemDummy(CleanDummy):
    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        return {"loss": super().train_step(x)["loss"].item()}  # the regression: a sync every step


class CopyDummy(CleanDummy):
    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        noise = torch.randn((n, *self.spec.shape), generator=generator)  # on the generator's device (CPU) ...
        return self.mean + noise.to(self.device)  # ... and copied: the regression


class Float64Dummy(CleanDummy):
    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        return (super().sample(n, generator, mode).double() * 2).float()


def test_the_guard_passes_the_clean_dummy_and_catches_each_regression() -> None:
    spec = DataSpec("tiny", (1, 2, 2), 256, (0.0, 1.0), 8, 8, "synthetic")
    assert_device_clean(CleanDummy(spec), spec)
    with pytest.raises(AssertionError, match=r"train_step 2: 1 x tests/test_device_clean.py:\d+ in train_step sync"):
        assert_device_clean(ItemDummy(spec), spec)
    with pytest.raises(AssertionError, match=r"sample\(default\): 1 x tests/test_device_clean.py:\d+ in sample copy"):
        assert_device_clean(CopyDummy(spec), spec)
    with pytest.raises(AssertionError, match=r"in sample float64"):
        assert_device_clean(Float64Dummy(spec), spec)


def test_device_traffic_counts_each_kind_once() -> None:
    x = torch.ones(3, device="meta")
    with device_traffic() as t:
        float(x.sum())  # a scalar read of a device tensor: a sync
        torch.randn(3).to("meta")  # a host tensor copied to the device
        torch.tensor([1.0, 2.0], device="meta")  # host data copied below the dispatcher
        x.double()  # a float64 op
        torch.ones(2).sum().item()  # a host tensor's scalar: no sync
    assert (t.syncs, t.copies, t.float64, t.host_reads) == (1, 2, 1, 1)
    assert t.ops > 0


# ----------------------------------------------------------------------------- mixed precision on the CPU


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_and_samples_under_cpu_bf16_autocast(name: str) -> None:
    model = build(name, IMAGES)
    model.configure_optimizers()
    x = torch.randint(0, 256, (4, *IMAGES.shape)) / 255.0
    for _ in range(6):  # through the DBM's phases; before the fix its first step raised (bf16 gradient assigned)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scalars = model.train_step(x)
        assert all(math.isfinite(float(v)) for v in scalars.values()), scalars
    model.eval()
    for mode in model.sampling_modes:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            samples = model.sample(2, generator=torch.Generator().manual_seed(0), mode=mode)
        assert samples.shape == (2, *IMAGES.shape) and torch.isfinite(samples.float()).all()


# ----------------------------------------------------------------------------- device generators


def test_a_generator_on_the_device_is_used_as_it_is() -> None:
    generator = torch.Generator().manual_seed(0)
    assert device_generator(generator, torch.device("cpu")) is generator
    assert device_generator(None, torch.device("cpu")) is None
    drawn = randn((3,), torch.Generator().manual_seed(5), torch.device("cpu"))
    assert torch.equal(drawn, torch.randn(3, generator=torch.Generator().manual_seed(5)))


def test_a_host_generator_seeds_one_device_generator_per_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no GPU here, the 'device' generator of the meta device is stood in by a CPU one."""
    real = torch.Generator
    made = []

    def fake(device: object = "cpu") -> torch.Generator:
        made.append(torch.device(device))
        return real()

    monkeypatch.setattr(torch, "Generator", fake)
    meta = torch.device("meta")
    host = real().manual_seed(0)
    first = device_generator(host, meta)
    assert made == [meta] and first is not None
    assert device_generator(host, meta) is first  # host state unchanged since: the same device generator
    # the derivation took one draw from the host generator: its seed is that draw
    assert first.initial_seed() == int(torch.randint(2**62, (), generator=real().manual_seed(0)))
    host.manual_seed(0)  # re-seeded: derived again, to the same seed (reproducible on the device)
    again = device_generator(host, meta)
    assert again is not first and again.initial_seed() == first.initial_seed()
    torch.rand(1, generator=host)  # the host generator used for something else: a new, different derivation
    other = device_generator(host, meta)
    assert other is not again and other.initial_seed() != first.initial_seed()


# ----------------------------------------------------------------------------- host copies of device state


def test_host_copies_of_step_counters_and_init_flags_follow_a_loaded_state() -> None:
    """The DBM's step counter and ActNorm's init flag are read once on the host; a loaded state dict (a resume)
    must be read again, or a resumed run would take the wrong training phase or skip/redo an initialisation."""
    x = torch.randint(0, 256, (4, *IMAGES.shape)) / 255.0
    trained, fresh = build("dbm", IMAGES), build("dbm", IMAGES)
    for model in (trained, fresh):
        model.configure_optimizers()
    for _ in range(5):  # past pretrain_steps=4: joint phase
        trained.train_step(x)
    fresh.train_step(x)  # its host copy now says 1 step
    fresh.load_state_dict(trained.state_dict())
    assert fresh.train_step(x)["phase"] == 2.0 and int(fresh.num_steps) == 6 and fresh._steps_done() == 6
    assert int(fresh.data_count) == 6 * len(x)

    flow, untrained = build("realnvp", IMAGES), build("realnvp", IMAGES)
    flow.configure_optimizers()
    flow.train_step(x)  # initializes every ActNorm from this batch
    norms = [m for m in flow.modules() if type(m).__name__ == "ActNorm"]
    assert norms and all(m._host_initialized and bool(m.initialized) for m in norms)
    flow.load_state_dict(untrained.state_dict())  # back to uninitialized layers
    assert all(m._host_initialized is None and not bool(m.initialized) for m in norms)
    flow.train_step(x)  # so this step initializes them again
    assert all(m._host_initialized and bool(m.initialized) for m in norms)
