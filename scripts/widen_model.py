"""Widen a trained U-Net without changing what it computes, to fine-tune the wider one.

    python scripts/widen_model.py --model default --base-width 16 --output runs/nuclei_w16

Every layer gets the new width. The old weights fill the first channels of each layer
(and, for the decoder's concatenated input, the first channels of both halves). The new
channels get fresh random weights in, and zero weights out into the old channels, so the
wider network's output equals the old one's until training changes it (checked on a
random image before saving).
"""

from __future__ import annotations

import argparse
import sys

import torch


def _input_index(name: str, old_in: int, new_in: int) -> torch.Tensor:
    """Where a layer's old input channels sit among its new ones.

    An ``Up`` block's first convolution reads the upsampled features and the skip
    concatenated, so its old channels are two runs, one at the start of each half.
    """
    if ".conv.0." in name and name.startswith("ups."):
        half_old, half_new = old_in // 2, new_in // 2
        return torch.cat([torch.arange(half_old), half_new + torch.arange(half_old)])
    return torch.arange(old_in)


def widen(old: torch.nn.Module, new: torch.nn.Module) -> torch.nn.Module:
    """Copy ``old``'s weights into the wider ``new`` so that both compute the same."""
    old_sd, new_sd = old.state_dict(), new.state_dict()
    for name, target in new_sd.items():
        src = old_sd[name]
        if src.dim() == 0:  # num_batches_tracked
            target.copy_(src)
        elif src.dim() == 1:  # conv bias, batch-norm weight/bias/running stats
            target[: src.shape[0]] = src
        else:
            transposed = ".up." in name  # ConvTranspose weights are (in, out, ...)
            w_out, w_in = (src.shape[1], src.shape[0]) if transposed else (src.shape[0], src.shape[1])
            n_in = target.shape[0] if transposed else target.shape[1]
            ins = _input_index(name, w_in, n_in)
            view = target.transpose(0, 1) if transposed else target  # (out, in, ...)
            old_view = src.transpose(0, 1) if transposed else src
            new_in_mask = torch.ones(n_in, dtype=torch.bool)
            new_in_mask[ins] = False
            view[:w_out][:, new_in_mask] = 0  # new channels do not reach old ones
            view[:w_out, ins] = old_view
    new.load_state_dict(new_sd)
    return new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--base-width", type=int, required=True)
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)

    from napari_unet.checkpoint import load_model, save_model
    from napari_unet.model import UNet

    base = load_model(args.model)
    cfg = base.config
    if args.base_width <= cfg.base_width:
        p.error(f"--base-width must be above the model's {cfg.base_width}")
    torch.manual_seed(0)
    wide = UNet(spatial_dims=cfg.spatial_dims, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                base_width=args.base_width, depth=cfg.depth)
    with torch.no_grad():
        widen(base.net, wide)
        base.net.eval(), wide.eval()
        x = torch.rand(2, cfg.in_channels, 64, 64)
        diff = (base.net(x) - wide(x)).abs().max().item()
    print(f"widened base width {cfg.base_width} -> {args.base_width}; largest output difference {diff:.2e}")
    if diff > 1e-4:
        print("the widened network computes something else: not saved", file=sys.stderr)
        return 1
    cfg.base_width = args.base_width
    cfg.provenance = dict(cfg.provenance, widened_from=base.sha256)
    save_model(args.output, wide, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
