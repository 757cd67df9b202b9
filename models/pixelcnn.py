"""Gated PixelCNN with exact likelihood and fast cached sampling.

Papers:
    van den Oord, Kalchbrenner, Kavukcuoglu (2016), "Pixel Recurrent Neural Networks": masks A/B, the
        R->G->B sub-pixel ordering, a categorical over the `L` levels of each sub-pixel.
    van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu (2016), "Conditional Image Generation
        with PixelCNN Decoders": vertical + horizontal stacks (no blind spot), gated activations
        `tanh(a) * sigmoid(b)`, residual and skip connections, class conditioning added to the gates.
    Ramachandran, Le Paine, Khorrami, Babaeizadeh, Chang, Zhang, Hasegawa-Johnson, Campbell, Huang (2017),
        "Fast Generation for Convolutional Autoregressive Models": cache each layer's activations and compute
        only what a newly generated pixel makes computable.

Layout used here. The vertical stack at row `i` sees only rows `< i` (its first convolution is shifted down by
one row), so it needs no channel mask. The horizontal stack sees row `i`, columns `<= j`; only its centre tap is
masked, by channel groups: the feature channels are split into `C` contiguous groups, group `g` belonging to
colour `g`, and a connection from group `a` to group `b` at the same pixel is allowed when `a < b` (mask A, first
layer) or `a <= b` (mask B, later layers and 1x1 convolutions). For `C = 1` this is the plain mask.

Sampling. `naive` runs the whole network once per sub-pixel. `cached` computes the vertical stack one row at a
time (a row's inputs are complete once the row above is generated) and the horizontal stack one pixel at a
time from a `1 x k` window of each layer's cached row. Both draw sub-pixel values by inverse-CDF sampling from
the same uniforms, drawn up front from `generator`, so they return identical samples for one generator state.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import DataSpec, to_levels
from genbench.errors import GenbenchError
from genbench.model import (
    GenerativeModel,
    ModelFamily,
    device_generator,
    draw_categorical,
    rand,
    require_discrete_images,
)

# ----------------------------------------------------------------------------- layers


def channel_groups(n: int, colours: int) -> torch.Tensor:
    """Colour group of each of `n` channels: contiguous blocks, block `g` belongs to colour `g`."""
    return torch.arange(n) * colours // n


def gate(z: torch.Tensor) -> torch.Tensor:
    """Gated activation `tanh(a) * sigmoid(b)`; `a` and `b` are the two halves of the channel dimension."""
    a, b = z.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class RowConv(nn.Module):
    """A `1 x width` convolution over columns `j-width+1 .. j` of the same row, centre tap masked by colour group.

    `width = 1` gives the masked 1x1 convolution. Output channels are grouped as `halves` consecutive blocks of
    `out_ch / halves` channels (2 for the inputs of a gate), each block split into colour groups.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        width: int,
        colours: int,
        mask_type: str,
        halves: int = 1,
        in_groups: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.width = width
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 1, width))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        g_in = channel_groups(in_ch, colours) if in_groups is None else in_groups
        g_out = channel_groups(out_ch // halves, colours).repeat(halves)
        allowed = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
        mask = torch.ones(out_ch, in_ch, 1, width)
        mask[:, :, 0, -1] = allowed.float()  # only the current pixel is masked; earlier columns are all visible
        self.register_buffer("mask", mask, persistent=False)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole image `(B, in, H, W)` -> `(B, out, H, W)`; zero padding on the left keeps it causal."""
        return F.conv2d(F.pad(x, (self.width - 1, 0, 0, 0)), self.masked_weight(), self.bias)


class GatedLayer(nn.Module):
    """One Gated PixelCNN layer: vertical and horizontal stacks, the v->h link, residual and skip outputs."""

    def __init__(self, in_ch: int, ch: int, kernel: int, colours: int, first: bool, num_classes: int | None) -> None:
        super().__init__()
        self.first, self.kernel = first, kernel
        self.v_height = kernel // 2 + 1 if not first else kernel // 2  # first layer: rows i-k//2 .. i-1 only
        self.v_shift = 1 if first else 0  # shifting down by one row keeps row i out of the vertical stack
        self.v_conv = nn.Conv2d(in_ch, 2 * ch, (self.v_height, kernel))
        in_groups = torch.arange(in_ch) if first else None  # input channel c is colour c
        self.h_conv = RowConv(in_ch, 2 * ch, kernel // 2 + 1, colours, "A" if first else "B", 2, in_groups)
        self.link = nn.Conv2d(2 * ch, 2 * ch, 1)  # vertical features are strictly above: no mask needed
        self.res = None if first else RowConv(ch, ch, 1, colours, "B")
        self.skip = RowConv(ch, ch, 1, colours, "B")
        self.cond = nn.Embedding(num_classes, 2 * ch) if num_classes else None

    def v_pad(self) -> tuple[int, int, int, int]:
        """Padding (left, right, top, bottom) that makes output row i see input rows `i-h+1-shift .. i-shift`."""
        return (self.kernel // 2, self.kernel // 2, self.v_height - 1 + self.v_shift, 0)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole-image pass: `(v, h)` in, `(v, h, skip)` out, each `(B, ch, H, W)`."""
        height = v.shape[2]
        v_pre = self.v_conv(F.pad(v, self.v_pad()))[:, :, :height]  # (B, 2ch, H, W), drop the shifted-out row
        h_pre = self.h_conv(h) + self.link(v_pre)
        if cond is not None:
            v_pre, h_pre = v_pre + cond[:, :, None, None], h_pre + cond[:, :, None, None]
        g = gate(h_pre)
        h_out = g if self.res is None else h + self.res(g)
        return gate(v_pre), h_out, self.skip(g)


# ----------------------------------------------------------------------------- the model


class PixelCNN(GenerativeModel):
    """Gated PixelCNN over `L`-level images with an exact likelihood and two sampling modes.

    Args:
        spec: the data; must be images with discrete levels (`spec.levels`), shape `(C, H, W)`.
        channels: feature maps per stack (rounded up to a multiple of `C` so each colour has a group).
        n_layers: gated layers (the first uses mask A and `first_kernel`; the rest mask B and `kernel`).
        kernel: kernel size of layers 2..n (odd).
        first_kernel: kernel size of the first layer (odd).
        head_channels: width of the two-layer 1x1 output head (rounded up to a multiple of `C`).
        num_classes: if set, a class embedding is added to every gate (class-conditional model).
        lr: Adam learning rate.
    """

    likelihood: ClassVar[str] = "exact"
    family: ClassVar[ModelFamily] = "autoregressive"
    sampling_modes: ClassVar[tuple[str, ...]] = ("cached", "naive")

    def __init__(
        self,
        spec: DataSpec,
        channels: int = 24,
        n_layers: int = 4,
        kernel: int = 3,
        first_kernel: int = 5,
        head_channels: int = 32,
        num_classes: int | None = None,
        lr: float = 1e-3,
    ) -> None:
        super().__init__(spec)
        require_discrete_images(spec, "pixelcnn")
        if kernel % 2 == 0 or first_kernel % 2 == 0 or first_kernel < 3 or kernel < 3:
            raise GenbenchError(f"pixelcnn kernels must be odd and >= 3; got kernel={kernel}, first={first_kernel}")
        self.C, self.H, self.W = spec.shape
        self.L = spec.levels
        ch = -(-channels // self.C) * self.C  # round up to a multiple of C
        head = -(-head_channels // self.C) * self.C
        self.num_classes, self.lr = num_classes, lr
        self.layers = nn.ModuleList(
            [GatedLayer(self.C, ch, first_kernel, self.C, True, num_classes)]
            + [GatedLayer(ch, ch, kernel, self.C, False, num_classes) for _ in range(n_layers - 1)]
        )
        self.head1 = RowConv(ch, head, 1, self.C, "B")
        self.head2 = RowConv(head, self.C * self.L, 1, self.C, "B")  # channel c*L + k: level k of colour c

    # ------------------------------------------------------------------ likelihood

    def _conds(self, y: torch.Tensor | None) -> list[torch.Tensor | None]:
        if self.num_classes is None:
            return [None] * len(self.layers)
        if y is None:
            raise GenbenchError("this PixelCNN is class-conditional (num_classes set): pass labels y")
        return [layer.cond(y) for layer in self.layers]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits `(B, C, L, H, W)` of every sub-pixel given the earlier ones; `x` in pipeline units `k/(L-1)`."""
        v = h = (
            2 * x.to(self.head2.weight.dtype) - 1
        )  # centre the input; no rounding here so gradients reach x (the mask test uses them)
        skip = 0
        for layer, cond in zip(self.layers, self._conds(y), strict=True):
            v, h, s = layer(v, h, cond)
            skip = skip + s
        out = self.head2(F.relu(self.head1(F.relu(skip))))  # (B, C*L, H, W)
        return out.view(x.shape[0], self.C, self.L, self.H, self.W)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example `log P(k) + D log L` in nats (DESIGN.md units), `k = round(x (L-1))`."""
        k = to_levels(x, self.L)  # (B, C, H, W)
        logp = F.log_softmax(self(k.to(x.dtype) / (self.L - 1), y), dim=2)  # (B, C, L, H, W)
        log_pk = logp.gather(2, k.unsqueeze(2)).squeeze(2).flatten(1).sum(1)  # (B,)
        return log_pk + self.spec.dim * math.log(self.L)

    # ------------------------------------------------------------------ training

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {"adam": torch.optim.Adam(self.parameters(), lr=self.lr)}
        return self.optimizers

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One Adam step on the discrete NLL; returns it in bits/dim (the loss) and nats/example."""
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        nll = -(self.log_prob(x, y) - self.spec.dim * math.log(self.L))  # discrete NLL, nats per example
        loss = nll.mean() / self.spec.dim  # nats/dim keeps the step size independent of image size
        loss.backward()
        opt.step()
        return {"loss_bpd": loss.detach() / math.log(2), "nll_nats": nll.detach().mean()}

    # ------------------------------------------------------------------ sampling

    def network_evaluations(self, mode: str | None = None) -> int:
        """One network step per sub-pixel, in either mode (cached sampling makes each step cheaper, not fewer)."""
        self.check_mode(mode)
        return self.spec.dim

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        mode: str | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`n` samples `(n, C, H, W)` on the grid `k/(L-1)`; `mode` is "cached" (default) or "naive".

        A class-conditional model draws its labels uniformly from `generator` when `labels` is None.
        """
        mode = self.check_mode(mode)
        device = self.device
        if self.num_classes is not None and labels is None:
            labels = torch.randint(self.num_classes, (n,), generator=device_generator(generator, device), device=device)
        # One uniform per sub-pixel, drawn before any network output, in (row, column, colour) order.
        u = rand((n, self.H, self.W, self.C), generator, device).double()
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                run = self._sample_cached if mode == "cached" else self._sample_naive
                k = run(u, labels)
        finally:
            self.train(was_training)
        return k.float() / (self.L - 1)

    def _sample_naive(self, u: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """H*W*C full forward passes, one per sub-pixel."""
        k = torch.zeros(u.shape[0], self.C, self.H, self.W, dtype=torch.long, device=u.device)
        for i in range(self.H):
            for j in range(self.W):
                for c in range(self.C):
                    logits = self(k.float() / (self.L - 1), labels)[:, c, :, i, j]  # (B, L)
                    k[:, c, i, j] = draw_categorical(logits, u[:, i, j, c])
        return k

    def _sample_cached(self, u: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Row-wise vertical stack plus pixel-wise horizontal stack over cached activations."""
        return _CachedSampler(self, labels, u.shape[0], u.device).run(u)


class _CachedSampler:
    """State of one cached generation (Ramachandran et al. 2017).

    Caches: `v_in[l]` holds layer l's vertical-stack input for the whole image, zero-padded as in the full pass;
    `h_in[l]` holds layer l's horizontal-stack input for the current row, zero-padded on the left.
    For row `i` every layer's vertical output is computed from rows already generated; then each sub-pixel
    recomputes only the column `(i, j)` of every layer's horizontal stack, from a `1 x k` window of the cache.
    """

    def __init__(self, model: PixelCNN, labels: torch.Tensor | None, n: int, device: torch.device) -> None:
        self.m, self.n = model, n
        self.conds = model._conds(labels)
        self.k = torch.zeros(n, model.C, model.H, model.W, dtype=torch.long, device=device)
        self.dtype = model.head2.weight.dtype
        like = {"device": device, "dtype": self.dtype}
        self.v_in, self.h_in = [], []
        for layer in model.layers:
            in_ch = layer.v_conv.in_channels
            left, right, top, _ = layer.v_pad()
            self.v_in.append(torch.zeros(n, in_ch, top + model.H, left + model.W + right, **like))
            self.h_in.append(torch.zeros(n, in_ch, layer.h_conv.width - 1 + model.W, **like))
        # Masked weights as matrices once, so each step is a few small matmuls.
        self.h_w = [(ly.h_conv.masked_weight().flatten(1), ly.h_conv.bias) for ly in model.layers]
        self.res_w = [
            None if ly.res is None else (ly.res.masked_weight().flatten(1), ly.res.bias) for ly in model.layers
        ]
        self.skip_w = [(ly.skip.masked_weight().flatten(1), ly.skip.bias) for ly in model.layers]
        self.head = [(hd.masked_weight().flatten(1), hd.bias) for hd in (model.head1, model.head2)]

    def run(self, u: torch.Tensor) -> torch.Tensor:
        m = self.m
        for i in range(m.H):
            links = self._vertical_row(i)
            for j in range(m.W):
                for c in range(m.C):
                    logits = self._pixel(i, j, links).view(self.n, m.C, m.L)[:, c]  # (B, L)
                    self.k[:, c, i, j] = draw_categorical(logits, u[:, i, j, c])
                    self._write_input(i, j, c)
        return self.k

    def _write_input(self, i: int, j: int, c: int) -> None:
        """Put the new sub-pixel, centred as in `forward`, into the first layer's caches."""
        value = 2 * (self.k[:, c, i, j].float() / (self.m.L - 1)).to(self.dtype) - 1  # same ops as forward
        first = self.m.layers[0]
        left, _, top, _ = first.v_pad()
        self.v_in[0][:, c, top + i, left + j] = value
        self.h_in[0][:, c, first.h_conv.width - 1 + j] = value

    def _vertical_row(self, i: int) -> list[torch.Tensor]:
        """Vertical stack at row `i` for every layer; returns each layer's `link(v_pre) + cond`, `(B, 2ch, W)`."""
        links = []
        for l, (layer, cond) in enumerate(zip(self.m.layers, self.conds, strict=True)):
            window = self.v_in[l][:, :, i : i + layer.v_height]  # the padded input rows that output row i sees
            v_pre = layer.v_conv(window)[:, :, 0]  # (B, 2ch, W)
            link = F.conv1d(v_pre, layer.link.weight[..., 0], layer.link.bias)  # (B, 2ch, W)
            if cond is not None:
                v_pre, link = v_pre + cond[:, :, None], link + cond[:, :, None]
            links.append(link)
            if l + 1 < len(self.m.layers):
                nxt = self.m.layers[l + 1]
                left, _, top, _ = nxt.v_pad()
                self.v_in[l + 1][:, :, top + i, left : left + self.m.W] = gate(v_pre)
        return links

    def _pixel(self, i: int, j: int, links: list[torch.Tensor]) -> torch.Tensor:
        """Horizontal stack at `(i, j)` for every layer, then the head; returns logits `(B, C*L)`."""
        skip = 0
        for l, layer in enumerate(self.m.layers):
            width = layer.h_conv.width
            window = self.h_in[l][:, :, j : j + width].reshape(self.n, -1)  # (B, in*width), matches weight order
            g = gate(F.linear(window, *self.h_w[l]) + links[l][:, :, j])  # (B, ch)
            h_out = g if self.res_w[l] is None else self.h_in[l][:, :, width - 1 + j] + F.linear(g, *self.res_w[l])
            skip = skip + F.linear(g, *self.skip_w[l])
            if l + 1 < len(self.m.layers):
                self.h_in[l + 1][:, :, self.m.layers[l + 1].h_conv.width - 1 + j] = h_out
        hidden = F.relu(F.linear(F.relu(skip), *self.head[0]))
        return F.linear(hidden, *self.head[1])
