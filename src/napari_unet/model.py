"""The U-Net: small named blocks, 2D or 3D, returning logits.

Shapes: input ``(N, in_channels, *spatial)``, output ``(N, out_channels, *spatial)``,
where each spatial size must be a multiple of ``2**depth`` (the engine pads; see
:func:`napari_unet.predict.iter_predict`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet", "DoubleConv", "Down", "Up"]


def _conv(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def _norm(spatial_dims: int, channels: int) -> nn.Module:
    return (nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d)(channels)


class DoubleConv(nn.Sequential):
    """Two (3x3 convolution, batch norm, ReLU) steps; spatial size unchanged."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int) -> None:
        conv = _conv(spatial_dims)
        super().__init__(
            conv(in_ch, out_ch, 3, padding=1, bias=False),
            _norm(spatial_dims, out_ch),
            nn.ReLU(inplace=True),
            conv(out_ch, out_ch, 3, padding=1, bias=False),
            _norm(spatial_dims, out_ch),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """Max-pool by 2, then a double convolution."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int) -> None:
        pool = nn.MaxPool2d(2) if spatial_dims == 2 else nn.MaxPool3d(2)
        super().__init__(pool, DoubleConv(spatial_dims, in_ch, out_ch))


class Up(nn.Module):
    """Transposed convolution (x2), concatenate the skip, then a double convolution."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        tconv = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        self.up = tconv(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = DoubleConv(spatial_dims, 2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net with skip connections and transposed-convolution upsampling.

    Parameters
    ----------
    spatial_dims : {2, 3}
        2 for images, 3 for volumes.
    in_channels : int
        Channels of the input image.
    out_channels : int
        Output classes; the network returns one logit map per class.
    base_width : int
        Feature maps at the first level; doubled at each level down.
    depth : int
        Number of down-sampling steps. Inputs must be multiples of ``2**depth``.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        base_width: int = 16,
        depth: int = 4,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if depth < 1 or base_width < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("depth, base_width, in_channels and out_channels must be >= 1")
        self.spatial_dims = spatial_dims
        self.depth = depth
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(spatial_dims, in_channels, widths[0])
        self.downs = nn.ModuleList(
            Down(spatial_dims, widths[i], widths[i + 1]) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            Up(spatial_dims, widths[i + 1], widths[i]) for i in reversed(range(depth))
        )
        self.head = _conv(spatial_dims)(widths[0], out_channels, 1)

    @property
    def multiple(self) -> int:
        """Each spatial input size must be a multiple of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)
