"""Invertible layers for the coupling flows in `models/flows.py` (NICE and RealNVP).

Papers:
    Dinh, Krueger and Bengio (2014), "NICE: Non-linear Independent Components Estimation", arXiv:1410.8516
    (additive coupling, diagonal scaling, logistic prior).
    Dinh, Sohl-Dickstein and Bengio (2017), "Density estimation using Real NVP", ICLR, arXiv:1605.08803
    (affine coupling, checkerboard and channel-wise masks, squeeze, logit pre-processing).
    Kingma and Dhariwal (2018), "Glow: Generative Flow with Invertible 1x1 Convolutions", arXiv:1807.03039
    (ActNorm with data-dependent initialisation, used here in place of RealNVP's batch normalisation).

Every layer maps `x -> (z, log_det)`, where `log_det` has shape `(B,)` and is `log|det dz/dx|` for each
example, and has `inverse(z) -> x`. Layers never mix examples (ActNorm's statistics are taken once, at
initialisation), so the Jacobian of a batch is block-diagonal and each block's determinant is `log_det[b]`.
The file reads top-down: base classes, masks and priors, the layers, then the coupling networks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- base classes


class FlowLayer(nn.Module):
    """A bijection with a tractable per-example log-determinant."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class FlowSequence(FlowLayer):
    """Composition of flow layers; log-determinants add up."""

    def __init__(self, layers: list[FlowLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z


# ----------------------------------------------------------------------------- masks and priors


def alternating_mask(dim: int, parity: int) -> torch.Tensor:
    """NICE's partition of a flat vector into odd and even components: 1 marks the unchanged half."""
    return (torch.arange(dim) % 2 == parity).float()  # (D,)


def checkerboard_mask(channels: int, height: int, width: int, parity: int) -> torch.Tensor:
    """RealNVP's spatial checkerboard: 1 where `(i + j) % 2 == parity`, the same in every channel."""
    ij = torch.arange(height)[:, None] + torch.arange(width)[None, :]
    return (ij % 2 == parity).float().expand(channels, height, width).clone()  # (C, H, W)


def channel_mask(channels: int, height: int, width: int, parity: int) -> torch.Tensor:
    """RealNVP's channel-wise mask: the first half of the channels (parity 0) or the second half is kept."""
    keep_first = (torch.arange(channels) < channels // 2).float()
    mask = keep_first if parity == 0 else 1.0 - keep_first
    return mask[:, None, None].expand(channels, height, width).clone()  # (C, H, W)


def gaussian_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Standard normal log density, summed per example: shape `(B,)`."""
    return (-0.5 * (z**2 + math.log(2 * math.pi))).flatten(1).sum(1)


def logistic_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Standard logistic log density `-(softplus(z) + softplus(-z))`, summed per example (NICE's prior)."""
    return -(F.softplus(z) + F.softplus(-z)).flatten(1).sum(1)


# ----------------------------------------------------------------------------- layers


class AdditiveCoupling(FlowLayer):
    """NICE's additive coupling: `z = x + (1 - b) * m(b * x)`; volume preserving, so `log_det = 0`.

    Args:
        mask: `b`, 1 on the half passed through unchanged (shape of one example).
        net: the coupling function `m`, any network from that shape to itself.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift = self.net(x * self.mask) * (1 - self.mask)
        return x + shift, x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        # The kept half is unchanged, so the same shift can be recomputed from z.
        return z - self.net(z * self.mask) * (1 - self.mask)


class AffineCoupling(FlowLayer):
    """RealNVP's affine coupling: `z = b*x + (1-b) * (x * exp(s(b*x)) + t(b*x))`.

    How the network's raw output becomes the log-scale `s` (`clamp`):
        "learned" (the default, the image path): `s = scale * tanh(raw)` with a learned per-channel `scale`
            (initialised at 1), so `|s|` stays bounded by `|scale|` and one step cannot blow the activations up.
        a number `c`: the soft clamp `s = c * tanh(raw / c)`, bounded by `c`, nearly `raw` for `|raw| << c`.
        None: `s = raw`, unbounded (RealNVP's plain `exp(s)`).

    Args:
        mask: `b`, 1 on the kept half; shape `(C, H, W)` for images or `(D,)` for vectors.
        net: maps the masked input to `2C` channels (or `2D` features): raw log-scale, then shift.
        clamp: "learned", a bound `c > 0`, or None, as above.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module, clamp: str | float | None = "learned") -> None:
        super().__init__()
        if not (clamp is None or clamp == "learned" or (isinstance(clamp, int | float) and clamp > 0)):
            raise ValueError(f"clamp={clamp!r}; accepted: 'learned', a number > 0, or None")
        self.register_buffer("mask", mask)
        self.net = net
        self.clamp = clamp
        if clamp == "learned":
            self.scale = nn.Parameter(torch.ones(mask.shape[0], *[1] * (mask.dim() - 1)))

    def _log_scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, shift = self.net(kept).chunk(2, dim=1)
        free = 1 - self.mask
        if self.clamp == "learned":
            log_s = self.scale * torch.tanh(raw)
        elif self.clamp is None:
            log_s = raw
        else:
            log_s = self.clamp * torch.tanh(raw / self.clamp)
        return log_s * free, shift * free

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_s, shift = self._log_scale_shift(x * self.mask)
        return x * torch.exp(log_s) + shift, log_s.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        log_s, shift = self._log_scale_shift(z * self.mask)
        return (z - shift) * torch.exp(-log_s)


class Scaling(FlowLayer):
    """NICE's diagonal scaling `z = x * exp(s)`, the only volume change in NICE: `log_det = sum(s)`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.exp(-self.log_scale)


class Squeeze(FlowLayer):
    """RealNVP's squeeze: each 2x2 block becomes 4 channels, `(B, C, H, W) -> (B, 4C, H/2, W/2)`; a permutation."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
        return x.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        b, c4, h2, w2 = z.shape
        z = z.view(b, c4 // 4, 2, 2, h2, w2).permute(0, 1, 4, 2, 5, 3)  # (B, C, H/2, 2, W/2, 2)
        return z.reshape(b, c4 // 4, 2 * h2, 2 * w2)


class ActNorm(FlowLayer):
    """Per-channel affine normalisation `z = (x + loc) * exp(log_scale)` (Glow).

    Data-dependent initialisation: the first forward pass in training mode sets `loc` and `log_scale` so that
    that batch comes out with zero mean and unit variance per channel; afterwards they are ordinary
    parameters. Chosen over RealNVP's batch normalisation because it never mixes the examples of a batch,
    so `log_prob` of one example does not depend on the others and training and evaluation agree.
    Works on `(B, C, H, W)` and on `(B, D)` (then every feature is a channel).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        # A buffer, so a loaded checkpoint does not re-initialise from its first batch.
        self.register_buffer("initialized", torch.tensor(False))
        # Its value on the host, read once (None: not read yet, or a state dict was loaded since), so a training
        # step does not wait for the device to say whether the layer is initialized.
        self._host_initialized: bool | None = None
        self.register_load_state_dict_post_hook(_forget_host_initialized)

    def _view(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.view(1, -1, *[1] * (x.dim() - 2))  # (1, C, 1, 1) or (1, D)

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        per_channel = x.transpose(0, 1).flatten(1)  # (C, B*H*W)
        self.loc.copy_(-per_channel.mean(1))
        self.log_scale.copy_(-torch.log(per_channel.std(1, unbiased=False).clamp_min(1e-3)))
        self.initialized.fill_(True)
        self._host_initialized = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self._host_initialized is None:
            self._host_initialized = bool(self.initialized)
        if self.training and not self._host_initialized:
            self._initialize(x)
        z = (x + self._view(self.loc, x)) * torch.exp(self._view(self.log_scale, x))
        positions = x[0, 0].numel()  # H*W for images, 1 for vectors
        return z, (positions * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.exp(-self._view(self.log_scale, z)) - self._view(self.loc, z)


def _forget_host_initialized(module: ActNorm, incompatible_keys: object) -> None:
    module._host_initialized = None


class LogitTransform(FlowLayer):
    """RealNVP's pre-processing `y = logit(alpha + (1 - 2 alpha) x)` from `[0, 1]` to the real line.

    Its Jacobian is counted, so a flow behind it has a density on `[0, 1]^D`:
    `log_det = sum(log(1 - 2 alpha) - log p - log(1 - p))` with `p = alpha + (1 - 2 alpha) x`.
    """

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_p, log_1mp = torch.log(p), torch.log1p(-p)
        log_det = (math.log(1 - 2 * self.alpha) - log_p - log_1mp).flatten(1).sum(1)
        return log_p - log_1mp, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)


# ----------------------------------------------------------------------------- coupling networks


class MLP(nn.Sequential):
    """ReLU network for couplings on flat vectors; the last layer starts at zero so each coupling starts
    as the identity (a common trick for stable early training)."""

    def __init__(self, d_in: int, d_out: int, hidden: int, n_hidden: int) -> None:
        layers: list[nn.Module] = []
        d = d_in
        for _ in range(n_hidden):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        last = nn.Linear(d, d_out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(*layers, last)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class ResNet(nn.Module):
    """RealNVP's `s, t` network: a small residual CNN (no normalisation inside; zero-initialised output)."""

    def __init__(self, c_in: int, c_out: int, hidden: int, n_blocks: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(c_in, hidden, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(n_blocks)])
        self.out = nn.Conv2d(hidden, c_out, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.blocks(self.inp(x))))
