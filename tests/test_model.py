"""The U-Net itself: shapes, configuration, argument checks."""

from __future__ import annotations

import pytest
import torch

from napari_unet.model import DoubleConv, Down, UNet, Up


@pytest.mark.parametrize(
    ("spatial_dims", "depth", "base_width", "in_ch", "out_ch", "spatial"),
    [
        (2, 1, 4, 1, 2, (6, 10)),
        (2, 2, 4, 3, 5, (8, 12)),
        (2, 3, 2, 2, 1, (16, 24)),
        (3, 1, 2, 1, 3, (4, 6, 8)),
        (3, 2, 4, 2, 2, (8, 4, 12)),
    ],
)
def test_logits_shape(spatial_dims, depth, base_width, in_ch, out_ch, spatial):
    torch.manual_seed(0)
    net = UNet(spatial_dims=spatial_dims, in_channels=in_ch, out_channels=out_ch,
               base_width=base_width, depth=depth).eval()
    assert net.multiple == 2**depth
    assert all(s % net.multiple == 0 for s in spatial)
    x = torch.randn(2, in_ch, *spatial)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, out_ch, *spatial)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_returns_logits_not_probabilities():
    """Logits are unbounded: they do not sum to one over classes like a softmax would."""
    torch.manual_seed(0)
    net = UNet(spatial_dims=2, out_channels=3, base_width=4, depth=2).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 1, 16, 16) * 5)
    sums = y.sum(dim=1)
    assert not torch.allclose(sums, torch.ones_like(sums), atol=1e-3)
    assert (y < 0).any()


def test_widths_double_per_level():
    net = UNet(spatial_dims=2, in_channels=3, out_channels=2, base_width=4, depth=3)
    assert net.stem[0].in_channels == 3 and net.stem[0].out_channels == 4
    assert [d[1][0].out_channels for d in net.downs] == [8, 16, 32]
    # Upsampling goes back 32 -> 16 -> 8 -> 4, then a 1x1 head to the classes.
    assert [u.up.out_channels for u in net.ups] == [16, 8, 4]
    assert net.head.in_channels == 4 and net.head.out_channels == 2
    assert net.head.kernel_size == (1, 1)


def test_3d_uses_3d_layers():
    net = UNet(spatial_dims=3, base_width=2, depth=1)
    kinds = {type(m).__name__ for m in net.modules()}
    assert {"Conv3d", "BatchNorm3d", "MaxPool3d", "ConvTranspose3d"} <= kinds
    assert not {"Conv2d", "BatchNorm2d"} & kinds


def test_blocks_shapes():
    x = torch.randn(1, 3, 8, 8)
    assert DoubleConv(2, 3, 5)(x).shape == (1, 5, 8, 8)
    assert Down(2, 3, 6)(x).shape == (1, 6, 4, 4)
    up = Up(2, 6, 3)
    assert up(torch.randn(1, 6, 4, 4), torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_gradients_reach_the_first_layer():
    torch.manual_seed(0)
    net = UNet(spatial_dims=2, base_width=4, depth=2).train()
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    assert net.stem[0].weight.grad is not None
    assert net.stem[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 1},
        {"spatial_dims": 4},
        {"depth": 0},
        {"depth": -1},
        {"base_width": 0},
        {"in_channels": 0},
        {"out_channels": 0},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        UNet(**{"base_width": 4, "depth": 2, **kwargs})


def test_input_not_a_multiple_fails():
    """The network itself does not pad: a size that is not a multiple of 2**depth fails."""
    net = UNet(spatial_dims=2, base_width=2, depth=2).eval()
    with pytest.raises(RuntimeError):
        net(torch.randn(1, 1, 10, 12))
