"""Shared fixtures for the engine tests: tiny seeded models and synthetic images.

Every network here is a U-Net with ``base_width=4`` and ``depth=2`` (so inputs
are padded to multiples of 4) and weights drawn from a fixed torch seed. Batch
norm layers get random affine parameters and running statistics, so that eval
mode is not an identity and comparisons between code paths mean something.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_unet.checkpoint import ModelConfig, save_model


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny networks gain nothing from threads, and on a busy 2-core machine every
    OpenMP region can wait a whole scheduler slice for its second thread (about
    0.6 s per forward pass instead of 10 ms). One thread keeps the suite fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_batchnorm(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every batch norm layer random (but valid) running stats and affine terms."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.4 * torch.rand(n, generator=gen) - 0.2)
    return net.eval()


def build_model(
    folder: Path,
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    target: str = "semantic",
    classes: list[str] | None = None,
    seed: int = 0,
    postprocess: dict | None = None,
    depth: int = 2,
) -> Path:
    """Save a tiny seeded model into ``folder`` and return the folder."""
    if classes is None:
        classes = (["background", "interior", "boundary"] if target == "three_class"
                   else ["background"] + [f"class{i}" for i in range(1, out_channels)])
    kwargs = {}
    if postprocess is not None:
        kwargs["postprocess"] = {**ModelConfig().postprocess, **postprocess}
    cfg = ModelConfig(spatial_dims=spatial_dims, in_channels=in_channels,
                      out_channels=out_channels, base_width=4, depth=depth,
                      target=target, classes=classes, name=folder.name, **kwargs)
    torch.manual_seed(seed)
    net = randomize_batchnorm(cfg.build(), seed=seed)
    with torch.no_grad():
        # A fresh tiny net gives logits within about +-0.1 of each other, so every
        # probability is close to 1/K. Scaling the head spreads them over (0, 1),
        # which gives comparisons and thresholds something to bite on.
        net.head.weight.mul_(30.0)
        # ... and centre the logits, so that no class wins everywhere.
        probe = torch.randn(2, in_channels, *[16] * spatial_dims, generator=torch.Generator().manual_seed(seed))
        mean = net(probe).mean(dim=[0, *range(2, 2 + spatial_dims)])
        net.head.bias.sub_(mean)
    return save_model(folder, net, cfg)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Model folders shared by many tests (read-only: tests must not modify them)."""
    root = tmp_path_factory.mktemp("models")
    return {
        "2d": build_model(root / "2d"),
        "2d_k3": build_model(root / "2d_k3", out_channels=3, seed=1),
        "2d_in2": build_model(root / "2d_in2", in_channels=2, seed=2),
        "3d": build_model(root / "3d", spatial_dims=3, seed=3),
        "three_class": build_model(root / "three_class", out_channels=3,
                                   target="three_class", seed=4),
    }


@pytest.fixture
def model2d(models) -> Path:
    return models["2d"]


@pytest.fixture
def model3d(models) -> Path:
    return models["3d"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def fake_net(monkeypatch):
    """Replace the network by "probability of foreground = normalised intensity".

    With it, segmenting a synthetic image has a known answer: pixels whose
    normalised intensity exceeds the threshold are foreground. Returns a list
    that records the shape of every batch the predictor ran.
    """
    from napari_unet.predict import Predictor

    calls: list[tuple[int, ...]] = []

    def forward(self, batch):
        calls.append(batch.shape)
        fg = np.clip(batch[:, :1], 0.0, 1.0)
        k = self.config.out_channels
        rest = [fg] + [np.zeros_like(fg)] * (k - 2)
        return np.concatenate([1.0 - fg, *rest], axis=1).astype(np.float32)

    monkeypatch.setattr(Predictor, "_forward", forward)
    return calls


@pytest.fixture
def forward_calls(monkeypatch) -> list:
    """Batch shapes of every real forward pass (``Predictor._forward`` still runs)."""
    from napari_unet.predict import Predictor

    calls: list = []
    original = Predictor._forward

    def counting(self, batch):
        calls.append(batch.shape)
        return original(self, batch)

    monkeypatch.setattr(Predictor, "_forward", counting)
    return calls


@pytest.fixture
def disk_syncs(monkeypatch) -> list:
    """Every ``os.fsync`` and ``os.replace``, in order (both still run): ``("fsync", inode, is_folder)``
    and ``("replace", inode, new name)``. See :func:`assert_durable`."""
    events: list = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", info.st_ino, stat.S_ISDIR(info.st_mode)))
        return fsync(fd)

    def spy_replace(src, dst, *args, **kwargs):
        events.append(("replace", os.stat(src).st_ino, os.path.basename(dst)))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    return events


@pytest.fixture
def unique_inverse_calls(monkeypatch) -> list:
    """Whether each ``np.unique`` call (which still runs) asked for ``return_inverse``: its
    ranking holds the GIL throughout, so napari froze while a worker ranked a big stack."""
    calls: list = []
    real = np.unique

    def spy(*args, **kwargs):
        calls.append(bool(kwargs.get("return_inverse")))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "unique", spy)
    return calls


def assert_durable(events: list, path: Path) -> None:
    """``path`` was sent to the disk before it was renamed into place, and its folder after."""
    inode = path.stat().st_ino
    renamed = events.index(("replace", inode, path.name))
    assert ("fsync", inode, False) in events[:renamed], f"{path.name} was not synced before its rename"
    assert ("fsync", path.parent.stat().st_ino, True) in events[renamed + 1:], (
        f"the folder of {path.name} was not synced after its rename")


def disc(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disc of ``radius`` around ``center`` in an array of ``shape``."""
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def touching_discs(shape=(40, 60), radius=9.0) -> tuple[np.ndarray, tuple, tuple]:
    """Two overlapping discs forming one connected blob with a waist between them."""
    c1 = (shape[0] / 2, shape[1] / 2 - radius * 0.8)
    c2 = (shape[0] / 2, shape[1] / 2 + radius * 0.8)
    return disc(shape, c1, radius) | disc(shape, c2, radius), c1, c2


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """The helper functions above, for tests (test modules do not import conftest)."""
    return SimpleNamespace(build_model=build_model, randomize_batchnorm=randomize_batchnorm,
                           disc=disc, touching_discs=touching_discs, assert_durable=assert_durable)
