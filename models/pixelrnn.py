"""PixelRNN: Row LSTM and Diagonal BiLSTM autoregressive image models with an exact likelihood.

van den Oord, Kalchbrenner and Kavukcuoglu (2016), "Pixel Recurrent Neural Networks", ICML.

The image is a sequence of sub-pixels in raster order (rows top to bottom, columns left to right,
channels R -> G -> B inside a pixel), and the model factorises `P(k) = prod_i P(k_i | k_<i)` with a
categorical over the `L` levels for every sub-pixel. The network reads top-down:

* a mask-A convolution (the centre pixel sees only earlier channels) turns the image into features;
* residual recurrent layers: a Row LSTM (a row at a time, a 1-D convolution over the previous row's
  state, a triangular context) or a Diagonal BiLSTM (the map is skewed so each diagonal becomes a
  column, and each state sees its left and upper neighbours; the right-to-left direction is shifted
  down one row so the sum of both directions stays causal);
* mask-B 1x1 convolutions to `C * L` logits.

Channel masking: every feature map is split into `C` contiguous groups; group `c` may see the current
pixel's groups `< c` (mask A) or `<= c` (mask B), and group `c` of the output predicts channel `c`.
State-to-state connections only reach earlier pixels, so they need no mask.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import DataSpec, to_levels
from genbench.errors import GenbenchError
from genbench.model import GenerativeModel, LikelihoodKind, ModelFamily, draw_categorical, rand, require_discrete_images

VARIANTS = ("row", "diagonal")


# ----------------------------------------------------------------------------- masks and layers


def channel_groups(n: int, channels: int) -> torch.Tensor:
    """Group (predicted channel) of each of `n` features: `C` contiguous blocks."""
    return torch.arange(n) * channels // n


class MaskedConv2d(nn.Conv2d):
    """A 2-D convolution that sees only pixels before the centre in raster order.

    At the centre pixel, output group `c` sees input groups `< c` (mask "A", the first layer) or
    `<= c` (mask "B", every later layer).
    """

    def __init__(
        self,
        in_groups: torch.Tensor,
        out_groups: torch.Tensor,
        kernel_size: tuple[int, int],
        mask_type: str,
    ) -> None:
        kh, kw = kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise GenbenchError(f"masked convolution kernel {kernel_size} must have odd sizes")
        super().__init__(len(in_groups), len(out_groups), kernel_size, padding=(kh // 2, kw // 2))
        mask = torch.ones_like(self.weight)  # (out, in, kh, kw)
        mask[:, :, kh // 2 + 1 :] = 0  # rows below the centre
        mask[:, :, kh // 2, kw // 2 + 1 :] = 0  # right of the centre
        if mask_type == "A":
            centre = out_groups[:, None] > in_groups[None, :]
        else:
            centre = out_groups[:, None] >= in_groups[None, :]
        mask[:, :, kh // 2, kw // 2] = centre.to(mask.dtype)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def lstm_cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update from pre-activations `gates` (..., 4h) stacked as (i, f, o, g)."""
    hidden = gates.shape[-1] // 4
    i, f, o = torch.sigmoid(gates[..., : 3 * hidden]).chunk(3, dim=-1)  # one sigmoid call for three gates
    c = f * c + i * torch.tanh(gates[..., 3 * hidden :])
    return o * torch.tanh(c), c


def neighbours(h: torch.Tensor, kernel: int) -> torch.Tensor:
    """States at offsets -k//2..k//2 along dim 1, zero past the edges, side by side:
    (B, N, h) -> (B, N, k*h). A linear map of this is a 1-D convolution of width k along dim 1."""
    pad, n = kernel // 2, h.shape[1]
    padded = F.pad(h, (0, 0, pad, pad))  # (B, N + 2 pad, h)
    return torch.cat([padded[:, o : o + n] for o in range(kernel)], dim=2)


class RowLSTM(nn.Module):
    """Row LSTM: one row at a time; input-to-state is a masked 1 x k convolution along the row, and
    state-to-state a 1-D convolution of width k over the previous row's hidden state."""

    def __init__(self, features: int, hidden: int, channels: int, kernel: int = 3) -> None:
        super().__init__()
        gate_groups = channel_groups(hidden, channels).repeat(4)  # i, f, o, g of unit u share u's group
        self.input_to_state = MaskedConv2d(channel_groups(features, channels), gate_groups, (1, kernel), "B")
        # a width-k convolution written as a linear map of the k neighbours: much faster than Conv1d on
        # the small per-row tensors of a recurrent loop
        self.state_to_state = nn.Linear(kernel * hidden, 4 * hidden)
        self.hidden, self.kernel = hidden, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, width = x.shape
        gates_in = self.input_to_state(x).permute(0, 2, 3, 1)  # (B, H, W, 4h)
        h = x.new_zeros(b, width, self.hidden)
        c = torch.zeros_like(h)
        rows = []
        for gates_row in gates_in.unbind(1):  # unbind, not indexing: its backward is one stack
            h, c = lstm_cell(gates_row + self.state_to_state(neighbours(h, self.kernel)), c)
            rows.append(h)
        return torch.stack(rows, dim=1).permute(0, 3, 1, 2)  # (B, H, W, h) -> (B, h, H, W)


def skew(x: torch.Tensor) -> torch.Tensor:
    """Shift row `r` right by `r`: (B, F, H, W) -> (B, F, H, W + H - 1); diagonals become columns.

    Pad each row to W + H and read the flat buffer back in rows of W + H - 1: element (r, j) sits at
    r (W + H) + j = r (W + H - 1) + (r + j). Reshapes, not a loop of slices, whose backward would
    allocate a zero map per row.
    """
    b, f, height, width = x.shape
    flat = F.pad(x, (0, height)).flatten(2)  # (B, F, H (W + H))
    return flat[:, :, : height * (width + height - 1)].view(b, f, height, width + height - 1)


def unskew(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `skew`: (B, F, H, W + H - 1) -> (B, F, H, W), by the same index identity."""
    b, f, height, skewed_width = x.shape
    flat = F.pad(x.flatten(2), (0, height))  # (B, F, H (W + H))
    return flat.view(b, f, height, skewed_width + 1)[:, :, :, : skewed_width - height + 1]


class DiagonalBiLSTM(nn.Module):
    """Diagonal BiLSTM: two LSTMs scan the skewed map column by column (one diagonal at a time).

    In the skewed map, the state at (r, s) reads the states at (r, s-1) and (r-1, s-1): the left and
    upper neighbours in the original image, a width-2 convolution over rows. The cells the skew pads
    with zeros never feed a real cell from the right, so unskewing drops them. The right-to-left
    direction is the same scan on the mirrored image; its state at (r, j) has read (r, j+1..W-1),
    which come later in raster order, so its output is shifted down one row before the sum.
    Both directions run in one loop (batched matrix products), halving the sequential steps.
    """

    def __init__(self, features: int, hidden: int, channels: int) -> None:
        super().__init__()
        gate_groups = channel_groups(hidden, channels).repeat(4)
        self.input_to_state = nn.ModuleList(
            MaskedConv2d(channel_groups(features, channels), gate_groups, (1, 1), "B") for _ in range(2)
        )
        # state-to-state weights of [state above, state] -> gates, per direction (nn.Linear's init)
        bound = 1 / math.sqrt(2 * hidden)
        self.state_weight = nn.Parameter(torch.empty(2, 2 * hidden, 4 * hidden).uniform_(-bound, bound))
        self.state_bias = nn.Parameter(torch.empty(2, 1, 4 * hidden).uniform_(-bound, bound))
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        directions = (self.input_to_state[0](x), self.input_to_state[1](x).flip(3))  # 1x1 conv: flip commutes
        gates_in = torch.stack([skew(g) for g in directions]).permute(0, 1, 4, 3, 2)  # (2, B, W + H - 1, H, 4h)
        h = x.new_zeros(2, b, height, self.hidden)
        c = torch.zeros_like(h)
        columns = []
        for gates_column in gates_in.unbind(2):  # (2, B, H, 4h); unbind's backward is one stack
            above = F.pad(h, (0, 0, 1, 0))[:, :, :-1]  # row r holds state row r-1 (zero on top)
            context = torch.cat([above, h], dim=3).view(2, b * height, 2 * self.hidden)
            recurrent = torch.baddbmm(self.state_bias, context, self.state_weight)  # (2, B*H, 4h)
            h, c = lstm_cell(gates_column + recurrent.view(2, b, height, 4 * self.hidden), c)
            columns.append(h)
        skewed = torch.stack(columns, dim=2).permute(0, 1, 4, 3, 2)  # (2, B, h, H, W + H - 1)
        out = unskew(skewed.flatten(0, 1)).view(2, b, self.hidden, height, width)
        backward = F.pad(out[1].flip(3), (0, 0, 1, 0))[:, :, :-1]  # unmirror; row r now holds row r-1
        return out[0] + backward


class ResidualLayer(nn.Module):
    """A recurrent layer on 2h features, its h outputs brought back to 2h by a mask-B 1x1 convolution
    and added to its input (the paper's residual connection)."""

    def __init__(self, variant: str, features: int, hidden: int, channels: int) -> None:
        super().__init__()
        if variant == "row":
            self.lstm: nn.Module = RowLSTM(features, hidden, channels)
        else:
            self.lstm = DiagonalBiLSTM(features, hidden, channels)
        groups_h, groups_f = channel_groups(hidden, channels), channel_groups(features, channels)
        self.up = MaskedConv2d(groups_h, groups_f, (1, 1), "B")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.lstm(x))


# ----------------------------------------------------------------------------- the model


class PixelRNN(GenerativeModel):
    """PixelRNN with a categorical over `spec.levels` per sub-pixel; exact `log_prob`.

    Args:
        spec: an image dataset's spec, shape (C, H, W) with `levels`.
        variant: "row" (Row LSTM) or "diagonal" (Diagonal BiLSTM).
        layers: number of residual recurrent layers.
        hidden: LSTM units `h` per layer (the residual stream has 2h features).
        input_kernel: size of the square mask-A input convolution (odd; the paper uses 7).
        output_hidden: features of the hidden mask-B 1x1 output convolution.
        lr: Adam learning rate.
        grad_clip: gradient-norm clipping threshold (recurrent nets need it), 0 disables.
    """

    likelihood: ClassVar[LikelihoodKind] = "exact"
    family: ClassVar[ModelFamily] = "autoregressive"
    sampling_modes: ClassVar[tuple[str, ...]] = ("naive",)

    def __init__(
        self,
        spec: DataSpec,
        variant: str = "diagonal",
        layers: int = 1,
        hidden: int = 16,
        input_kernel: int = 5,
        output_hidden: int = 32,
        lr: float = 1e-3,
        grad_clip: float = 1.0,
    ) -> None:
        super().__init__(spec)
        require_discrete_images(spec, "pixelrnn")
        if variant not in VARIANTS:
            raise GenbenchError(f"unknown PixelRNN variant {variant!r}; accepted: {', '.join(VARIANTS)}")
        channels = spec.shape[0]
        if min(hidden, output_hidden) < channels:
            raise GenbenchError(f"hidden and output_hidden must be >= the {channels} channels (one group each)")
        self.variant, self.lr, self.grad_clip = variant, lr, grad_clip
        self.levels = spec.levels
        features = 2 * hidden
        groups_x, groups_f = channel_groups(channels, channels), channel_groups(features, channels)
        groups_o = channel_groups(output_hidden, channels)
        self.input_conv = MaskedConv2d(groups_x, groups_f, (input_kernel, input_kernel), "A")
        self.layers = nn.ModuleList(ResidualLayer(variant, features, hidden, channels) for _ in range(layers))
        # logits laid out as (C, L): feature c*L + l is level l of channel c, in group c
        self.output = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(groups_f, groups_o, (1, 1), "B"),
            nn.ReLU(),
            MaskedConv2d(groups_o, channel_groups(channels * self.levels, channels), (1, 1), "B"),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every sub-pixel given the earlier ones: (B, C, H, W) -> (B, C, L, H, W)."""
        h = self.input_conv(2 * x - 1)  # centre the inputs on zero
        for layer in self.layers:
            h = layer(h)
        out = self.output(h)  # (B, C*L, H, W)
        b, _, height, width = out.shape
        return out.view(b, -1, self.levels, height, width)  # (B, C, L, H, W)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact `log P(k) + D log L` in nats per example, `k = round(x (L-1))` (DESIGN.md units)."""
        k = to_levels(x, self.levels)  # (B, C, H, W)
        logp = -F.cross_entropy(self.logits(x).transpose(1, 2), k, reduction="none")  # (B, C, H, W)
        return logp.flatten(1).sum(1) + self.spec.dim * math.log(self.levels)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"model": torch.optim.Adam(self.parameters(), lr=self.lr)}
        return self.optimizers

    def train_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step on the mean NLL per sub-pixel (nats); also reports it in bits/dim."""
        if not self.optimizers:
            self.configure_optimizers()
        opt = self.optimizers["model"]
        dim = self.spec.dim
        loss = -(self.log_prob(x) - dim * math.log(self.levels)).mean() / dim
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip)
        opt.step()
        value = loss.detach()
        return {"loss": value, "bits_per_dim": value / math.log(2)}

    def network_evaluations(self, mode: str | None = None) -> int:
        """One network step per sub-pixel."""
        self.check_mode(mode)
        return self.spec.dim

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mode: str | None = None) -> torch.Tensor:
        """Draw `n` images sub-pixel by sub-pixel (one forward pass per sub-pixel); values `k/(L-1)`."""
        self.check_mode(mode)
        channels, height, width = self.spec.shape
        x = torch.zeros(n, channels, height, width, device=self.device)
        for r in range(height):
            for col in range(width):
                for ch in range(channels):
                    # causality: rows below r cannot change row r's logits, so leave them out
                    logits = self.logits(x[:, :, : r + 1])[:, ch, :, r, col]  # (n, L)
                    k = draw_categorical(logits, rand((n,), generator, x.device))
                    x[:, ch, r, col] = k.to(x.dtype) / (self.levels - 1)
        return x
