"""Batch augmentation in torch, on whatever device trains.

Covers what microscopes vary: orientation (flips, 90 degree turns), scale
(done when cropping, see :func:`~napari_unet.training.data.random_crops`),
intensity (gain, offset, gamma), noise and blur.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["collate_crops", "augment_batch"]


def collate_crops(crops: Sequence[tuple[np.ndarray, np.ndarray, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize crops to their target size and stack them.

    Returns
    -------
    image : Tensor (N, C, S, S) float32
    target : Tensor (N, S, S) int64
    """
    images, targets = [], []
    for img, tgt, size in crops:
        x = torch.from_numpy(np.ascontiguousarray(img)).to(device)[None]
        t = torch.from_numpy(np.ascontiguousarray(tgt)).to(device)[None, None].float()
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            # "nearest-exact" samples pixel centres as bilinear does with align_corners=False;
            # plain "nearest" would shift the target half a pixel against the image.
            t = F.interpolate(t, size=(size, size), mode="nearest-exact")
        images.append(x[0])
        targets.append(t[0, 0].long())
    return torch.stack(images), torch.stack(targets)


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    xs = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    return k / k.sum()


def augment_batch(image: torch.Tensor, target: torch.Tensor, generator: torch.Generator, *,
                  strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips, turns, gain/offset, gamma, noise and blur, per sample.

    Parameters
    ----------
    image : Tensor (N, C, S, S) float, normalised (about 0..1)
    target : Tensor (N, S, S) int64
    generator : torch.Generator on the CPU, seeded by the caller
    strength : float
        Scales the intensity changes (0 turns them off).
    """
    n = image.shape[0]
    out_i, out_t = [], []
    r = torch.rand(n, 8, generator=generator).tolist()
    for i in range(n):
        x, t = image[i], target[i]
        if r[i][0] < 0.5:
            x, t = x.flip(-1), t.flip(-1)
        if r[i][1] < 0.5:
            x, t = x.flip(-2), t.flip(-2)
        k = int(r[i][2] * 4) % 4
        if k:
            x, t = torch.rot90(x, k, (-2, -1)), torch.rot90(t, k, (-2, -1))
        if strength > 0:
            gamma = float(np.exp((r[i][3] - 0.5) * 0.8 * strength))
            x = torch.where(x > 0, x.clamp(min=0) ** gamma, x)  # below 0 (background noise) as it was
            gain = max(1.0 + (r[i][4] - 0.5) * 0.6 * strength, 0.1)  # never inverts the image
            offset = (r[i][5] - 0.5) * 0.2 * strength
            x = x * gain + offset
            if r[i][6] < 0.3:
                sigma = 0.3 + 1.2 * r[i][7]
                kern = _gaussian_kernel(sigma, x.device)
                c, half = x.shape[0], kern.numel() // 2
                # Edge pixels repeated: zero padding would darken the crop's borders (and
                # mirroring needs a crop wider than the kernel).
                x = F.pad(x[None], (half, half, half, half), mode="replicate")
                x = F.conv2d(x, kern.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
                x = F.conv2d(x, kern.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]
            elif r[i][6] < 0.6:
                noise = torch.randn(x.shape, generator=generator).to(x.device)
                x = x + noise * (0.02 + 0.08 * r[i][7]) * strength
        out_i.append(x)
        out_t.append(t)
    return torch.stack(out_i), torch.stack(out_t)
