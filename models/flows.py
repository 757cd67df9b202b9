"""NICE and RealNVP: coupling flows with an exact likelihood (layers in `models/flow_layers.py`).

Papers:
    Dinh, Krueger and Bengio (2014), "NICE: Non-linear Independent Components Estimation", arXiv:1410.8516.
    Dinh, Sohl-Dickstein and Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803.

Units (DESIGN.md): `log_prob(x)` takes images in pipeline units `k/(L-1)`, dequantizes them to `(k+u)/L`
(genbench.data.dequantize) and returns the log density of that point on `[0, 1]^D`, in nats, so bits/dim are
`-(log_prob - D log L) / (D ln 2)`. Toy 2-D data (`spec.levels is None`) is used raw and `log_prob` is the
density in the data's own units. `sample` is a single inverse pass from the prior; images are clamped to
`[0, 1]` and not quantized. Both flows are bijections, so `latent_dim == D`; they have no `decode`, which keeps
AIS (meant for decoder models) away from them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.data import DataSpec, dequantize
from genbench.model import GenerativeModel, rand, randn
from models.flow_layers import (
    MLP,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowLayer,
    FlowSequence,
    LogitTransform,
    ResNet,
    Scaling,
    Squeeze,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    gaussian_log_prob,
    logistic_log_prob,
)

PRIORS = ("logistic", "gaussian")


class _CouplingFlow(GenerativeModel):
    """What NICE and RealNVP share: dequantization, the likelihood, training and sampling.

    Subclasses build the bijection and implement `forward_flow(y) -> (z, log_det)` with `z` of shape `(B, D)`
    and `inverse_flow(z) -> y`, where `y` is a dequantized example in `[0, 1]^D` (or a raw toy point).
    """

    likelihood = "exact"
    family = "flow"
    data_variant = "dequantized"

    def __init__(self, spec: DataSpec, prior: str, lr: float, max_grad_norm: float) -> None:
        super().__init__(spec)
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; accepted: {PRIORS}")
        self.prior = prior
        self.lr = lr
        self.max_grad_norm = max_grad_norm
        self.latent_dim = spec.dim
        self.is_toy = spec.levels is None
        self.ema_decay: float | None = None

    # ------------------------------------------------------------------ an exponential moving average of the weights

    def enable_ema(self, decay: float) -> None:
        """Keep an exponential moving average of the weights, updated after every step; in eval mode the model
        uses the average (sampling, `log_prob`, every metric), in training mode its live weights.

        Call once, after the whole flow is built. The average is kept in buffers `ema.<i>` (one per parameter, in
        `parameters()` order), so checkpoints carry it and a resumed run continues it. The decay warms up as
        `min(decay, (1 + n) / (10 + n))` after `n` updates, so the initial weights are forgotten early.
        Switching modes swaps the contents of each parameter and its buffer in place, and the buffer
        `ema_in_use` says which of the two the parameters hold: a state dict saved in either mode loads back
        into the same weights, and `.to()` moves both.
        """
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay={decay!r}; accepted: a number in (0, 1)")
        self.ema_decay = float(decay)
        self.ema = nn.Module()  # a namespace for the buffers: state dict keys ema.0, ema.1, ...
        for i, p in enumerate(self.parameters()):
            self.ema.register_buffer(str(i), p.detach().clone())
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("ema_in_use", torch.tensor(False))
        # Host copies of (ema_updates, ema_in_use), kept in step with the buffers (None: a state dict was loaded
        # since, read once), so a training step never waits for the device to say how many updates there were or
        # which weights are in place.
        self._host_ema: tuple[int, bool] | None = (0, False)
        self.register_load_state_dict_post_hook(_forget_host_ema)
        if not self.training:  # built in eval mode: hold the average from the start
            self.train(False)

    def _ema_state(self) -> tuple[int, bool]:
        if self._host_ema is None:
            self._host_ema = (int(self.ema_updates), bool(self.ema_in_use))
        return self._host_ema

    def _ema_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [p.data for p in self.parameters()], list(self.ema.buffers())

    @torch.no_grad()
    def _swap_ema(self, use: bool) -> None:
        updates, in_use = self._ema_state()
        if in_use == use:
            return
        for p, avg in zip(*self._ema_pairs(), strict=True):
            live = p.clone()
            p.copy_(avg)
            avg.copy_(live)
        self.ema_in_use.fill_(use)
        self._host_ema = (updates, use)

    @torch.no_grad()
    def _update_ema(self) -> None:
        updates, in_use = self._ema_state()
        assert not in_use, "the moving average is updated from the live weights (training mode)"
        decay = min(self.ema_decay, (1 + updates) / (10 + updates))
        live, average = self._ema_pairs()
        torch._foreach_lerp_(average, live, 1.0 - decay)
        self.ema_updates.add_(1)
        self._host_ema = (updates + 1, in_use)

    def train(self, mode: bool = True) -> _CouplingFlow:
        super().train(mode)
        if self.ema_decay is not None:
            self._swap_ema(not mode)
        return self

    def forward_flow(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse_flow(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return logistic_log_prob(z) if self.prior == "logistic" else gaussian_log_prob(z)

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dtype = next(self.parameters()).dtype
        if self.prior == "gaussian":
            return randn((n, self.latent_dim), generator, self.device).to(dtype)
        # Inverse CDF of the standard logistic; clamping keeps a float32 draw away from log(0).
        u = rand((n, self.latent_dim), generator, self.device).to(dtype).clamp(1e-6, 1 - 1e-6)
        return torch.log(u) - torch.log1p(-u)

    def log_prob_continuous(self, y: torch.Tensor) -> torch.Tensor:
        """Log density of an already-dequantized (or toy) batch `y`, nats per example."""
        z, log_det = self.forward_flow(y)
        return self.prior_log_prob(z) + log_det

    def log_prob(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact log density in nats per example of `x` dequantized with noise from `generator` (images)."""
        y = x if self.is_toy else dequantize(x, self.spec.levels, generator)
        return self.log_prob_continuous(y)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"flow": torch.optim.Adam(self.parameters(), lr=self.lr)}
        return self.optimizers

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One maximum-likelihood step. `loss` is bits/dim for images, nats/example for toy data."""
        self.train()
        log_p = self.log_prob(x)  # the dequantization noise comes from the global RNG, as the trainer expects
        d = self.spec.dim
        objective = -log_p.mean() / d  # nats/dim: the step size does not depend on the image size
        opt = self.optimizers["flow"]
        opt.zero_grad(set_to_none=True)
        objective.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
        opt.step()
        if self.ema_decay is not None:
            self._update_ema()
        nll = -log_p.detach().mean()  # tensors: the trainer reads them when it logs
        loss = nll if self.is_toy else (nll + d * math.log(self.spec.levels)) / (d * math.log(2))
        return {"loss": loss, "grad_norm": grad_norm}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        """`n` samples from one inverse pass; images clamped to `[0, 1]` (not quantized)."""
        self.check_mode(mode)
        y = self.inverse_flow(self.prior_sample(n, generator))
        return y if self.is_toy else y.clamp(0.0, 1.0)


def _forget_host_ema(module: _CouplingFlow, incompatible_keys: object) -> None:
    module._host_ema = None
    if module.ema_decay is not None:  # the loaded weights may be the other kind than the mode asks for
        module._swap_ema(not module.training)


class NICE(_CouplingFlow):
    """NICE (Dinh et al. 2014): additive couplings on alternating odd/even halves, then a diagonal scaling.

    On images NICE works on the flattened, dequantized data in `[0, 1]^D` directly, as in the paper (no logit;
    `logit_alpha` switches RealNVP's logit pre-processing on, Jacobian counted). The prior is logistic on
    images (the paper's MNIST setup) and Gaussian on toy 2-D data unless `prior` says otherwise.

    Args:
        spec: the data.
        n_couplings: number of additive coupling layers (the paper: 4).
        hidden: width of each coupling MLP (the paper, MNIST: 1000).
        n_hidden: hidden layers per coupling MLP (the paper, MNIST: 5).
        prior: `logistic`, `gaussian`, or None for the default above.
        logit_alpha: if set, apply `logit(alpha + (1 - 2 alpha) x)` to images first.
        toy_init_gain: toy 2-D only: the couplings' last layers start with weights drawn from
            `N(0, gain^2 / hidden)` (bias zero; the initial shifts' size then does not depend on the width), so each
            coupling starts near the identity but not at it; None or 0 = zero weights, the exact identity.
        lr: Adam learning rate.
        max_grad_norm: gradient-norm clipping threshold.

    Why the toy start is off the identity: with every coupling at the identity, the scaling soon fits the data's
    moment-matched Gaussian, and there a coupling's expected gradient vanishes whenever `E[x_free | x_kept] = 0`
    (both ring8 and grid25 are symmetric that way): the last layer's gradient is `E[h(x_kept) z_free] = 0`, the
    layers below get none through a zero last layer, and only batch noise moves them. Wide couplings stayed there
    for all 3,000 steps (KL to truth exactly the Gaussian fit's, 3.23 nats on ring8, at hidden 64 and 256).
    """

    def __init__(
        self,
        spec: DataSpec,
        n_couplings: int = 4,
        hidden: int = 128,
        n_hidden: int = 2,
        prior: str | None = None,
        logit_alpha: float | None = None,
        toy_init_gain: float | None = 0.4,
        lr: float = 1e-3,
        max_grad_norm: float = 100.0,
    ) -> None:
        super().__init__(spec, prior or ("gaussian" if spec.levels is None else "logistic"), lr, max_grad_norm)
        if toy_init_gain is not None and not toy_init_gain >= 0:
            raise ValueError(f"toy_init_gain={toy_init_gain!r}; accepted: a number >= 0 or None")
        d = spec.dim
        couplings: list[FlowLayer] = [
            AdditiveCoupling(alternating_mask(d, i % 2), MLP(d, d, hidden, n_hidden)) for i in range(n_couplings)
        ]
        if self.is_toy and toy_init_gain:
            with torch.no_grad():
                for coupling in couplings:
                    nn.init.normal_(coupling.net[-1].weight, std=toy_init_gain / math.sqrt(hidden))
        self.flow = FlowSequence([*couplings, Scaling(d)])
        self.logit = LogitTransform(logit_alpha) if logit_alpha is not None and not self.is_toy else None

    def forward_flow(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = y.flatten(1)  # (B, D)
        log_det = x.new_zeros(x.shape[0])
        if self.logit is not None:
            x, log_det = self.logit(x)
        z, ld = self.flow(x)
        return z, log_det + ld

    def inverse_flow(self, z: torch.Tensor) -> torch.Tensor:
        x = self.flow.inverse(z)
        if self.logit is not None:
            x = self.logit.inverse(x)
        return x.view(-1, *self.spec.shape)  # (B, *shape)


def _affine_couplings(shape: tuple[int, int, int], kind: str, n: int, hidden: int, n_blocks: int) -> list[FlowLayer]:
    """`n` affine couplings with alternating masks of one kind, each followed by ActNorm."""
    c, h, w = shape
    make_mask = checkerboard_mask if kind == "checkerboard" else channel_mask
    layers: list[FlowLayer] = []
    for i in range(n):
        layers += [AffineCoupling(make_mask(c, h, w, i % 2), ResNet(c, 2 * c, hidden, n_blocks)), ActNorm(c)]
    return layers


class RealNVP(_CouplingFlow):
    """RealNVP (Dinh et al. 2017) with the paper's multi-scale architecture and a Gaussian prior.

    Images: `y -> logit(alpha + (1 - 2 alpha) y)` (Jacobian counted), then `n_scales - 1` scales of
    [3 checkerboard couplings, squeeze, 3 channel-wise couplings, factor out half the channels], then 4
    checkerboard couplings on what is left. On 8x8 digits with 2 scales: 1x8x8 -> squeeze 4x4x4 -> 2x4x4
    factored out, 2x4x4 goes on. Each coupling's `s, t` is a residual CNN; log-scales are `scale * tanh(raw)`
    with a learned per-channel scale; normalisation is ActNorm with data-dependent init after every coupling
    (not the paper's batch norm; see `ActNorm`). Toy 2-D data: `n_couplings` affine couplings with MLPs on
    alternating coordinates, on the raw data, each starting as the identity (zero last layer), with the image
    path's `scale * tanh` log-scales, no ActNorm, and evaluated at an exponential moving average of the weights
    (`toy_ema_decay`; see `_CouplingFlow.enable_ema`). The former toy recipe had an ActNorm after every coupling
    and was evaluated at the last iterate; on ring8 and grid25 at 3,000 steps of 64, dropping the ActNorms is
    most of the gain and the average the rest, while unclamped log-scales are no better and overflow off the
    data (benchmarks/toy_flows_vs_normflows.py has the numbers).

    Args:
        spec: the data.
        n_scales: number of scales including the last (the paper, CIFAR-10: 2, i.e. one squeeze).
        hidden: feature maps of the `s, t` ResNets (the paper, CIFAR-10: 64).
        n_blocks: residual blocks per ResNet (the paper, CIFAR-10: 8).
        logit_alpha: `alpha` of the logit pre-processing (the paper: 0.05).
        n_couplings, mlp_hidden, mlp_layers: the toy 2-D variant's couplings and their MLPs.
        toy_actnorm: toy 2-D only: an ActNorm after every coupling (the former recipe).
        toy_clamp: toy 2-D only: the couplings' log-scale map (`AffineCoupling`'s `clamp`: "learned" = the image
            path's `scale * tanh(raw)`, a number c = `c * tanh(raw / c)`, None = unclamped).
        toy_ema_decay: toy 2-D only: decay of the weights' moving average used in eval mode; None = off.
        lr: Adam learning rate.
        max_grad_norm: gradient-norm clipping threshold.
    """

    def __init__(
        self,
        spec: DataSpec,
        n_scales: int = 2,
        hidden: int = 16,
        n_blocks: int = 1,
        logit_alpha: float = 0.05,
        n_couplings: int = 6,
        mlp_hidden: int = 64,
        mlp_layers: int = 2,
        toy_actnorm: bool = False,
        toy_clamp: str | float | None = "learned",
        toy_ema_decay: float | None = 0.999,
        lr: float = 1e-3,
        max_grad_norm: float = 100.0,
    ) -> None:
        super().__init__(spec, "gaussian", lr, max_grad_norm)
        self.scales = nn.ModuleList()
        self.z_shapes: list[tuple[int, ...]] = []  # shape of each factored-out piece, then of the last one
        if self.is_toy:
            d = spec.dim
            layers: list[FlowLayer] = []
            for i in range(n_couplings):
                net = MLP(d, 2 * d, mlp_hidden, mlp_layers)  # zero last layer: every coupling starts as the identity
                layers += [AffineCoupling(alternating_mask(d, i % 2), net, clamp=toy_clamp)]
                layers += [ActNorm(d)] if toy_actnorm else []
            self.final = FlowSequence(layers)
            self.logit = None
            self.z_shapes.append((d,))
            if toy_ema_decay is not None:
                self.enable_ema(toy_ema_decay)
            return
        self.logit = LogitTransform(logit_alpha)
        self._build_scales(n_scales, hidden, n_blocks)

    def _build_scales(self, n_scales: int, hidden: int, n_blocks: int) -> None:
        c, h, w = self.spec.shape
        factor = 2 ** (n_scales - 1)
        if n_scales < 1 or h % factor or w % factor:
            raise ValueError(f"n_scales={n_scales} needs H and W divisible by {factor}; images are {h}x{w}")
        for _ in range(n_scales - 1):
            layers = _affine_couplings((c, h, w), "checkerboard", 3, hidden, n_blocks)
            c, h, w = 4 * c, h // 2, w // 2
            layers += [Squeeze(), *_affine_couplings((c, h, w), "channel", 3, hidden, n_blocks)]
            self.scales.append(FlowSequence(layers))
            c = c // 2  # half the channels are factored out
            self.z_shapes.append((c, h, w))
        self.final = FlowSequence(_affine_couplings((c, h, w), "checkerboard", 4, hidden, n_blocks))
        self.z_shapes.append((c, h, w))

    def forward_flow(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, log_det = (y, y.new_zeros(y.shape[0])) if self.logit is None else self.logit(y)
        zs = []
        for scale in self.scales:
            x, ld = scale(x)
            log_det = log_det + ld
            z, x = x.chunk(2, dim=1)  # factor out the first half of the channels: it goes to the prior
            zs.append(z.flatten(1))
        x, ld = self.final(x)
        zs.append(x.flatten(1))
        return torch.cat(zs, dim=1), log_det + ld  # (B, D)

    def inverse_flow(self, z: torch.Tensor) -> torch.Tensor:
        parts = z.split([math.prod(s) for s in self.z_shapes], dim=1)
        x = self.final.inverse(parts[-1].reshape(-1, *self.z_shapes[-1]))
        for scale, part, shape in reversed(list(zip(self.scales, parts[:-1], self.z_shapes[:-1], strict=True))):
            x = scale.inverse(torch.cat([part.reshape(-1, *shape), x], dim=1))
        return x if self.logit is None else self.logit.inverse(x)
