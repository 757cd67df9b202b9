"""The noise-prediction U-Net of a DDPM (Ho et al. 2020, Appendix B), sized from the data.

Ho et al.'s network is a PixelCNN++-style U-Net (Salimans et al. 2017) with group normalisation, a sinusoidal
timestep embedding added in every residual block, and self-attention at 16x16. Their CIFAR-10 model has 128
base channels, multipliers (1, 2, 2, 2) over 32/16/8/4 pixels, two residual blocks per resolution, attention
at 16x16 and dropout 0.1 (35.7M parameters). Here the number of resolutions follows the image: halve while both
sides are even and larger than 4 (8x8 digits: 8, 4; 28x28 MNIST: 28, 14, 7; 32x32 CIFAR-10: 32, 16, 8, 4, the
paper's four), so one module serves every dataset of the suite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def resolutions(height: int, width: int) -> list[int]:
    """The U-Net's resolutions (the height at each level): halve while both sides are even and above 4."""
    sizes = [height]
    while height % 2 == 0 and width % 2 == 0 and min(height, width) > 4:
        height, width = height // 2, width // 2
        sizes.append(height)
    return sizes


def group_norm(channels: int) -> nn.GroupNorm:
    """Ho et al.'s 32 groups at 128 channels and above; fewer (4 channels a group) for the small CPU network."""
    return nn.GroupNorm(math.gcd(channels, min(32, max(1, channels // 4))), channels)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps `t (B,)`, as in the Transformer and Ho et al.; `(B, dim)`."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's weights so a residual branch starts as the identity (as Ho et al. initialise them)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep embedding added in between, and a residual connection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.dropout = group_norm(c_out), nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)  # each (B, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class Level(nn.Module):
    """The residual blocks (each optionally followed by attention) of one resolution on one side of the U."""

    def __init__(self, channels_in: list[int], c_out: int, emb_dim: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(c, c_out, emb_dim, dropout) for c in channels_in)
        self.attns = nn.ModuleList(SelfAttention(c_out) if attention else nn.Identity() for _ in channels_in)


class UNet(nn.Module):
    """`(x_t (B, C, H, W), t (B,)) -> (B, out_channels, H, W)`: the noise (and, learned, the variance's v).

    Args:
        in_channels: the image's channels C.
        out_channels: C for epsilon only, 2C with learned variances.
        height, width: the image size; the resolutions follow from it (`resolutions`).
        channels: base channel count (Ho et al. CIFAR-10: 128).
        channel_mult: channels at each resolution as multiples of `channels`; None: 1 at the first resolution,
            2 below it (CIFAR-10 gets the paper's (1, 2, 2, 2)). Its length must equal the number of resolutions.
        num_res_blocks: residual blocks per resolution on the way down (one more on the way up, as Ho et al.).
        attn_resolutions: the heights with self-attention after each residual block; None: 16 where the network
            has that resolution (the paper), else the coarsest one.
        dropout: in every residual block (Ho et al. CIFAR-10: 0.1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        height: int,
        width: int,
        channels: int = 32,
        channel_mult: tuple[int, ...] | None = None,
        num_res_blocks: int = 1,
        attn_resolutions: tuple[int, ...] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        sizes = resolutions(height, width)
        mult = tuple(channel_mult) if channel_mult is not None else (1,) + (2,) * (len(sizes) - 1)
        if len(mult) != len(sizes):
            raise ValueError(
                f"channel_mult {mult} has {len(mult)} entries but a {height}x{width} image gives "
                f"{len(sizes)} resolutions {sizes}; give one multiplier per resolution"
            )
        attn = set(attn_resolutions) if attn_resolutions is not None else ({16} if 16 in sizes else {sizes[-1]})
        emb_dim = 4 * channels
        self.channels = channels
        self.embed = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)

        skips, c = [channels], channels  # channel counts of the skip connections, in order of creation
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, size in enumerate(sizes):
            c_out = channels * mult[i]
            ins = [c] + [c_out] * (num_res_blocks - 1)
            self.down.append(Level(ins, c_out, emb_dim, dropout, size in attn))
            c = c_out
            skips += [c] * num_res_blocks
            if i < len(sizes) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1, self.mid_attn = ResBlock(c, c, emb_dim, dropout), SelfAttention(c)
        self.mid2 = ResBlock(c, c, emb_dim, dropout)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(sizes))):
            c_out = channels * mult[i]
            ins = []
            for _ in range(num_res_blocks + 1):
                ins.append(c + skips.pop())
                c = c_out
            self.up.append(Level(ins, c_out, emb_dim, dropout, sizes[i] in attn))
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.norm_out = group_norm(c)
        self.conv_out = zero_init(nn.Conv2d(c, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(timestep_embedding(t, self.channels).to(x.dtype))
        h = self.conv_in(x)
        hs = [h]
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, emb))
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
