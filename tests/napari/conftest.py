"""Fixtures for the viewer tests: tiny untrained models, a docked widget, notifications.

Run under a virtual display with OpenGL, e.g.::

    xvfb-run -a --server-args="-screen 0 1600x1000x24" python -m pytest tests/napari
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from napari.utils.notifications import Notification, notification_manager

from napari_unet.checkpoint import ModelConfig, save_model


def _tiny(folder: Path, **overrides) -> Path:
    fields = {
        "base_width": 4,
        "depth": 2,
        "out_channels": 3,
        "target": "three_class",
        "classes": ["background", "interior", "boundary"],
        "name": "tiny",
        **overrides,
    }
    cfg = ModelConfig(**fields)
    torch.manual_seed(0)
    return save_model(folder, cfg.build(), cfg)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2D three-class U-Net with 4 base filters (untrained: fast, deterministic)."""
    return _tiny(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def auto_model(tmp_path_factory) -> Path:
    """A tiny model whose config asks for scale "auto" (reference object area 50 px)."""
    post = {"threshold": 0.5, "seed_threshold": 0.5, "min_size": 0, "instance_method": "watershed",
            "fill_holes": True, "scale": "auto", "auto_scale_area": 50.0, "auto_scale_factor": 2.0}
    return _tiny(tmp_path_factory.mktemp("models") / "auto", postprocess=post, name="auto")


@pytest.fixture(scope="session")
def two_channel_model(tmp_path_factory) -> Path:
    """A tiny model that takes 2 input channels."""
    return _tiny(tmp_path_factory.mktemp("models") / "tiny2ch", in_channels=2, name="tiny2ch")


@pytest.fixture(scope="session")
def tuned_model(tmp_path_factory) -> Path:
    """A tiny model whose config carries non-default post-processing values."""
    post = {"threshold": 0.3, "seed_threshold": 0.6, "min_size": 25,
            "instance_method": "components", "fill_holes": False}
    return _tiny(tmp_path_factory.mktemp("models") / "tuned", postprocess=post, name="tuned")


@dataclass
class Notes:
    """Notifications napari received during a test."""

    items: list[Notification]

    def messages(self, severity: str | None = None) -> list[str]:
        return [n.message for n in self.items
                if severity is None or str(n.severity).lower() == severity]


@pytest.fixture
def notes():
    """Collect every napari notification (show_info/show_warning/show_error, errors)."""
    items: list[Notification] = []
    notification_manager.notification_ready.connect(items.append)
    yield Notes(items)
    notification_manager.notification_ready.disconnect(items.append)


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch) -> Path:
    """A home folder of each test's own: the models the Train widget saves by default, and those
    the widgets offer from there (~/.napari-unet/models), are the test's, never the user's."""
    folder = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.fixture(autouse=True)
def fresh_session():
    """Each test a fresh napari session: model files opened in one test are not offered in the next."""
    from napari_unet._napari.session import REGISTRY

    yield
    REGISTRY.forget_files()


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer, tiny_model):
    """A Segment widget docked in ``viewer``, with the tiny model chosen."""
    from napari_unet._napari.widget import SegmentWidget

    wdg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(wdg, name="Segment (U-Net)")
    assert wdg.add_model(str(tiny_model))
    wdg.device.value = "cpu"
    return wdg


@pytest.fixture
def wait_done(qtbot):
    """``wait_done(widget)`` waits until the widget's worker has finished."""

    def wait(wdg, timeout: int = 30_000) -> None:
        qtbot.waitUntil(lambda: not wdg.running, timeout=timeout)

    return wait


@pytest.fixture
def close_dock(qtbot):
    """``close_dock(button)``: click a panel's close button (its X) and let Python collect what
    it held, as closing a panel in napari does. Give the button, and drop every reference to the
    dock and its widget first, so that nothing here keeps them alive."""
    import gc

    def close(button) -> None:
        button.click()
        for _ in range(3):
            qtbot.wait(50)
            gc.collect()

    return close


@pytest.fixture
def start_run(qtbot):
    """``start_run(widget, layer)``: segment ``layer`` in 64 px tiles and return once the first
    progress record arrived, with the list that collects the records (the run goes on)."""

    def start(wdg, layer, *, tile_size: int = 64) -> list:
        wdg.image.value = layer
        wdg.tile_size.value = tile_size
        records: list = []
        wdg.run()
        wdg._run.worker.yielded.connect(records.append)
        qtbot.waitUntil(lambda: len(records) >= 1, timeout=20_000)
        return records

    return start


@pytest.fixture
def on_gui_thread(monkeypatch):
    """``spy(module, name)``: replace ``module.name`` by a wrapper and return the list it fills,
    one bool per call: True when that call ran on the GUI (main) thread."""

    def spy(module, name: str) -> list[bool]:
        calls: list[bool] = []
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls.append(threading.current_thread() is threading.main_thread())
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
        return calls

    return spy


@pytest.fixture
def make_blobs():
    """``make_blobs(shape)``: a synthetic nuclei-like image (see :func:`blobs`)."""
    return blobs


def blobs(shape: tuple[int, ...], *, seed: int = 0) -> np.ndarray:
    """A float32 image of bright round blobs on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    img = np.zeros(shape[-2:], np.float32)
    for _ in range(max(3, shape[-2] * shape[-1] // 400)):
        cy, cx = rng.uniform(0, shape[-2]), rng.uniform(0, shape[-1])
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2))
    out = np.broadcast_to(img, shape).copy()
    return out + rng.normal(0, 0.02, shape).astype(np.float32)
