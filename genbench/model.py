"""The one contract every generative model implements (see DESIGN.md, "The model contract").

The pipeline knows a model only through this class: it reads the capability attributes and calls
the methods a capability promises. It never looks at a model's name.

Units: `sample` returns data-space tensors (images in `[0, 1]`, toy data in its own units);
`log_prob` and `log_prob_bound` return per-example log densities on `[0, 1]^D` in nats, so a
discrete model returns `log P(k) + D * log L` (DESIGN.md, "Units").
"""

from __future__ import annotations

import weakref
from typing import ClassVar, Literal

import torch
from torch import nn

from genbench.data import DATASETS, DataSpec
from genbench.errors import GenbenchError

LikelihoodKind = Literal["exact", "lower_bound", "estimate", "none"]
# What a model is, for tables and the seed's claims (which compare families, never names).
ModelFamily = Literal[
    "adversarial", "variational", "autoregressive", "flow", "boltzmann", "markov_chain", "diffusion", "other"
]
# The data a model is trained and scored on: the discrete levels k/(L-1), uniformly dequantized (k+u)/L,
# or one fixed binarization (L = 2). Likelihood numbers on different variants do not compare.
DataVariant = Literal["discrete", "dequantized", "binarized"]


class GenerativeModel(nn.Module):
    """Base class of every model in `models/`.

    Subclasses set `likelihood`, build their networks from `spec` plus plain keyword arguments,
    and implement `configure_optimizers`, `train_step` and `sample`; then whichever of
    `log_prob` (exact), `log_prob_bound` (bound), `log_prob_estimate` (estimate: a stochastic
    estimate such as a DBM's variational bound with an AIS log-partition), `decode` + `latent_dim`
    (decoder-based) and `log_prob_given_latent(x, z)` (an observation model of its own, used by AIS)
    they can.
    """

    likelihood: ClassVar[LikelihoodKind] = "none"
    family: ClassVar[ModelFamily] = "other"
    # Sampling modes the model offers; the first is the default. The speed harness times each.
    sampling_modes: ClassVar[tuple[str, ...]] = ("default",)
    # True where the mode changes the distribution sampled (a chain's length, a diffusion's step count), so each
    # mode gets its own sample-quality numbers; False where modes compute one sampler differently (PixelCNN's
    # cached and naive draw identical samples).
    mode_changes_samples: ClassVar[bool] = False
    data_variant: ClassVar[DataVariant] = "discrete"
    # The most importance samples `log_prob_bound(x, k)` supports (None: any k; 1: its bound only, e.g. a
    # diffusion model's variational bound, where each importance sample costs a whole trajectory).
    max_bound_k: ClassVar[int | None] = None

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        self.spec = spec
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def register_step_counter(self) -> None:
        """A buffer `updates`, the optimizer steps taken (for schedules and warm-ups; checkpoints carry it, so a
        resumed run continues them), with a host copy read once and then kept in step by `count_step`, so a
        training step never waits on the device for its own step number. A loaded state dict resets the copy."""
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._host_updates: int | None = None
        self.register_load_state_dict_post_hook(_forget_host_updates)

    def steps_taken(self) -> int:
        """Optimizer steps taken so far (`register_step_counter`), read from the device at most once."""
        if self._host_updates is None:
            self._host_updates = int(self.updates.item())
        return self._host_updates

    def count_step(self) -> None:
        """One more optimizer step, on the device and in the host copy."""
        n = self.steps_taken() + 1
        self.updates += 1
        self._host_updates = n

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Create the model's optimizers from its own hyper-parameters, keep and return them."""
        raise NotImplementedError

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """One update on a batch `x` in data space; returns scalars to log (first one is the loss).

        Return 0-dim tensors (detached) rather than `.item()`s: the trainer reads them once per logging interval, so
        a GPU step never waits for the host. Python floats are accepted too.
        """
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        """`n` samples in data space, shape `(n, *spec.shape)`."""
        raise NotImplementedError

    def check_mode(self, mode: str | None) -> str:
        """Resolve a sampling mode name, refusing unknown ones with the accepted list."""
        if mode is None:
            return self.sampling_modes[0]
        if mode not in self.sampling_modes:
            raise ValueError(
                f"unknown sampling mode {mode!r} for {type(self).__name__}; accepted: {self.sampling_modes}"
            )
        return mode

    def likelihood_protocol(self) -> dict[str, object]:
        """Fields that describe how the model computes its own likelihood (e.g. a diffusion bound's timesteps);
        every likelihood metric of the model's own density carries them."""
        return {}

    def network_evaluations(self, mode: str | None = None) -> int:
        """Sequential network evaluations one sample needs in `mode`: 1 for a one-pass sampler, the number of
        sub-pixels for an autoregressive one, the chain length for a Markov chain. Work a GPU cannot batch away."""
        self.check_mode(mode)
        return 1

    def describe(self) -> dict[str, object]:
        """Facts the run record states about the model beyond its arguments."""
        return {
            "likelihood": self.likelihood,
            "family": self.family,
            "sampling_modes": list(self.sampling_modes),
            "default_mode": self.sampling_modes[0],
            "mode_changes_samples": self.mode_changes_samples,
            "network_evaluations": {mode: self.network_evaluations(mode) for mode in self.sampling_modes},
            "data_variant": self.data_variant,
            "parameters": sum(p.numel() for p in self.parameters()),
            "latent_dim": getattr(self, "latent_dim", None),
        }


def _forget_host_updates(module: GenerativeModel, incompatible_keys: object) -> None:
    module._host_updates = None


def require_discrete_images(spec: DataSpec, model_name: str) -> None:
    """Refuse data a pixel-level model cannot take (toy 2-D points), naming the datasets it accepts."""
    if not spec.is_image or spec.levels is None:
        image_sets = ", ".join(d for d in DATASETS if d != "toy2d")
        raise GenbenchError(
            f"model={model_name} needs an image dataset with discrete levels; dataset {spec.name!r} has shape "
            f"{spec.shape} and levels {spec.levels}; accepted: {image_sets} (image datasets)"
        )


def has_decoder(model: GenerativeModel) -> bool:
    """True for decoder-based models (GAN, VAE), which AIS can evaluate."""
    return callable(getattr(model, "decode", None)) and getattr(model, "latent_dim", None) is not None


# Device generators derived from host generators: {host generator: {device: (host state after the derivation,
# device generator)}}. Weak keys, so a finished run's generators are not kept alive.
_DERIVED: weakref.WeakKeyDictionary[torch.Generator, dict[str, tuple[torch.Tensor, torch.Generator | None]]] = (
    weakref.WeakKeyDictionary()
)


def _device_key(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:  # "cuda" means the current CUDA device
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def device_generator(generator: torch.Generator | None, device: torch.device | str) -> torch.Generator | None:
    """A generator that draws on `device`, derived from `generator` when that one lives elsewhere.

    A generator already on `device` (or None, the device's global RNG) is returned as it is. A generator on another
    device (the pipeline's CPU generator with a model on a GPU) seeds a device generator once, with one draw from
    it; that device generator serves every later draw until the host generator's state changes (re-seeded, or used
    for something else), when a new one is derived. Noise is then drawn where it is used, with no host-to-device
    copy, and a run stays reproducible on its own device: a CPU run and a GPU run of one seed are each
    reproducible, but they draw different numbers. Devices that cannot hold a generator (`meta`) get None.
    """
    device = torch.device(device)
    if generator is None or _device_key(generator.device) == _device_key(device):
        return generator
    key = _device_key(device)
    derived = _DERIVED.setdefault(generator, {})
    state = generator.get_state()
    if key in derived and torch.equal(derived[key][0], state):
        return derived[key][1]
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    try:
        on_device: torch.Generator | None = torch.Generator(device=device).manual_seed(seed)
    except RuntimeError:  # e.g. "META device type not an accelerator": there is no data to draw anyway
        on_device = None
    derived[key] = (generator.get_state(), on_device)
    return on_device


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise of `shape`, drawn on `device` from `generator` (see `device_generator`)."""
    return torch.randn(shape, generator=device_generator(generator, device), device=device)


def rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform `[0, 1)` noise drawn on `device`, like `randn`."""
    return torch.rand(shape, generator=device_generator(generator, device), device=device)


def draw_categorical(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of a level from `logits (B, L)` with uniforms `u (B,)`; returns `(B,)` long.

    Autoregressive samplers draw every sub-pixel this way, so two code paths that see the same uniforms and
    (up to round-off) the same logits draw the same levels.
    """
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)  # (B, L)
    return (cdf < u.double()[:, None]).sum(-1).clamp(max=logits.shape[-1] - 1)
