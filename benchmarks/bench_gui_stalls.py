"""How long napari's GUI thread stalls during each action of the widgets, on big inputs.

    xvfb-run -a python benchmarks/bench_gui_stalls.py [--only 2d,zstack,series,close,train] [--profile]

A real viewer (shown) gets the Segment and Train widgets. A QTimer on the GUI
thread fires every 10 ms and records the longest gap between two ticks while
each action runs, from the button press until the job is done and the result
drawn (plus 0.5 s): that gap is how long napari could not repaint or answer the
mouse. Anything near or above 250 ms is felt as a freeze.

Inputs are the bundled sample (520 x 696, 168 nuclei) tiled: a 4096 x 4096
uint16 image, a 40 x 1024 x 1024 z-stack and a 30 x 1024 x 1024 time series,
with the sample's ground truth tiled alongside as "painted" masks (then two brush
strokes, each followed by Update instances). The network is
an untrained 4-filter U-Net (the network's speed is not what is measured). With
``--profile`` the GUI thread is profiled (cProfile) over each action and the
plugin's functions printed, with the costliest of the rest. A stall there is no
function of the GUI thread's but its time.sleep taking long: a worker held the GIL
(find the call by sampling the worker's stack from another thread).

Takes about 4 minutes on 2 cores (2D 1 min, z-stack 1.5, series 1, train 0.5),
about 4 GB of memory.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def tiled(shape: tuple[int, int], *, offset: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """The bundled sample and its labels tiled to ``shape`` (ids kept distinct per tile)."""
    from napari_unet._napari.sample_data import nuclei_sample

    (img, _, _), (lab, _, _) = nuclei_sample()
    h, w = img.shape
    reps = (shape[0] // h + 2, shape[1] // w + 2)
    big = np.tile(img, reps)
    # Each tile's ids after the tiles before it: one nucleus, one id.
    offsets = np.arange(reps[0] * reps[1], dtype=np.int64).reshape(reps) * (int(lab.max()) + 1)
    tiles = np.tile(lab.astype(np.int64), reps)
    labels = np.where(tiles > 0, tiles + np.kron(offsets, np.ones((h, w), np.int64)), 0)
    y, x = offset[0] % h, offset[1] % w
    crop = (slice(y, y + shape[0]), slice(x, x + shape[1]))
    return big[crop].astype(np.uint16) * 64, labels[crop].astype(np.int32)


def stack(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tiled planes of ``size`` x ``size``, each shifted a little, and their labels."""
    planes = [tiled((size, size), offset=(7 * i, 11 * i)) for i in range(n)]
    return np.stack([p[0] for p in planes]), np.stack([p[1] for p in planes])


class StallMeter:
    """The longest gap between ticks of a 10 ms QTimer on the GUI thread since :meth:`reset`."""

    def __init__(self) -> None:
        from qtpy.QtCore import Qt, QTimer

        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)
        self.reset()
        self._timer.start()

    def reset(self) -> None:
        self._last = time.perf_counter()
        self.worst = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self._last)
        self._last = now


class Bench:
    def __init__(self, profile: bool) -> None:
        from qtpy.QtWidgets import QApplication

        self.app = QApplication.instance()
        self.meter = StallMeter()
        self.rows: list[tuple[str, str, float, float]] = []
        self.profile = profile

    def wait(self, done: Callable[[], bool], timeout: float = 600.0, settle: float = 0.5) -> None:
        """Run the event loop until ``done()``, then ``settle`` seconds more."""
        from qtpy.QtCore import QEventLoop

        end = time.perf_counter() + timeout
        while not done():
            if time.perf_counter() > end:
                raise TimeoutError("the action did not finish")
            self.app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.005)  # the loop itself must not hog a core from the worker
        stop = time.perf_counter() + settle
        while time.perf_counter() < stop:
            self.app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.005)

    def action(self, name: str, data: str, start: Callable[[], object],
               done: Callable[[], bool] = lambda: True, *, settle: float = 0.5) -> None:
        """Press ``start`` from inside the event loop (so its own time counts) and wait for ``done``."""
        from qtpy.QtCore import QTimer

        self.wait(lambda: True, settle=0.3)  # let the previous action's redraws pass
        prof = cProfile.Profile() if self.profile else None  # profiles the GUI thread only
        pressed = []

        def press() -> None:
            try:
                start()
            finally:
                pressed.append(True)

        self.meter.reset()
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        QTimer.singleShot(0, press)
        self.wait(lambda: bool(pressed) and done(), settle=settle)
        if prof is not None:
            prof.disable()
        took = time.perf_counter() - t0 - settle
        self.rows.append((name, data, self.meter.worst * 1000, took))
        print(f"{name:<40} {data:<24} {self.meter.worst * 1000:8.0f} ms  ({took:.1f} s)", flush=True)
        if prof is not None:
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("cumulative").print_stats(r"napari_unet|processEvents|sleep", 25)
            stats.sort_stats("tottime").print_stats(10)
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))

    def table(self) -> None:
        print("\n| action | input | longest GUI stall (ms) | action took (s) |")
        print("|---|---|---:|---:|")
        for name, data, ms, took in self.rows:
            flag = " **" if ms > 250 else ""
            print(f"| {name} | {data} | {ms:.0f}{flag} | {took:.1f} |")


def tiny_model(folder: Path) -> Path:
    import torch

    from napari_unet.checkpoint import ModelConfig, save_model

    cfg = ModelConfig(base_width=4, depth=2, out_channels=3, target="three_class",
                      classes=["background", "interior", "boundary"], name="tiny")
    torch.manual_seed(0)
    return save_model(folder, cfg.build(), cfg)


def segment_set(bench: Bench, viewer, wdg, label: str, image: np.ndarray, truth: np.ndarray,
                axes: str | None, *, link: bool = False) -> None:
    """Run, Cancel, re-run over untouched results, paint + Update instances, Measure, on one input."""
    from napari_unet._napari import widget as widget_module

    layer = viewer.add_image(image, name=label)
    finished = lambda: not wdg.running
    bench.action("choose image", label, lambda: setattr(wdg.image, "value", layer))
    if axes:
        bench.action("choose axes", label, lambda: setattr(wdg.axes, "value", axes))
    wdg.link_time.value = link
    # Cancel soon after the start.
    bench.action("Run, then Cancel after 1 s", label,
                 lambda: (wdg.run(), _later(1000, wdg.cancel)), finished)
    bench.action("Run (start to results shown)", label, wdg.run, finished)
    bench.action("Run again (replaces results)", label, wdg.run, finished)
    sem, inst = viewer.layers[f"{label} semantic"], viewer.layers[f"{label} instances"]
    # The user corrects the mask: here the whole sample's ground truth (thousands of nuclei),
    # written in place, then one brush stroke.
    sem.data[...] = (truth > 0).reshape(sem.data.shape)
    sem.refresh()
    viewer.layers.selection.active = sem
    sem.brush_size = 9

    def stroke(start: int = 40) -> None:
        sem.selected_label = 1
        for k in range(5):
            sem.paint((*([0] * (sem.ndim - 2)), start + 3 * k, start + 3 * k), 1)

    bench.action("paint one stroke", label, stroke)
    bench.action("Update instances", label, wdg.update_instances, finished)
    # The next correction: only what it touched is labelled again (a series: its frame).
    bench.action("paint one more stroke", label, lambda: stroke(400))
    bench.action("Update instances after it", label, wdg.update_instances, finished)
    viewer.layers.selection.active = viewer.layers[f"{label} instances"]
    widget_module.SegmentWidget._ask_table_path = lambda self, name: None  # no file dialog
    bench.action("Measure objects", label, wdg.measure, finished)
    inst.visible = False


def _later(ms: int, fn: Callable[[], object]) -> None:
    from qtpy.QtCore import QTimer

    QTimer.singleShot(ms, fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="2d,zstack,series,close,train")
    parser.add_argument("--profile", action="store_true", help="cProfile each action's slot")
    args = parser.parse_args()
    only = set(args.only.split(","))

    import napari

    from napari_unet._napari.train_widget import TrainWidget
    from napari_unet._napari.widget import SegmentWidget

    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    model = tiny_model(tmp / "tiny")
    viewer = napari.Viewer(show=True)
    bench = Bench(args.profile)
    wdg = SegmentWidget(viewer)
    dock = viewer.window.add_dock_widget(wdg, name="Segment (U-Net)")
    bench.action("open a model folder", "tiny U-Net", lambda: wdg.add_model(str(model)))
    wdg.device.value = "cpu"
    wdg.tile_size.value = 512

    if "2d" in only:
        img, truth = tiled((4096, 4096))
        segment_set(bench, viewer, wdg, "2D 4096x4096", img, truth, None)
        bench.action("choose model", "2D 4096x4096", lambda: setattr(wdg.model, "value", wdg.model.choices[0]))
        bench.action("choose model", "2D 4096x4096", lambda: setattr(wdg.model, "value", wdg.model.choices[-1]))
    if "zstack" in only:
        img, truth = stack(40, 1024)
        segment_set(bench, viewer, wdg, "Z 40x1024x1024", img, truth, "ZYX")
    if "series" in only:
        img, truth = stack(30, 1024)
        segment_set(bench, viewer, wdg, "T 30x1024x1024", img, truth, "TYX", link=True)
    if "close" in only:
        img, _ = stack(40, 1024)
        layer = viewer.add_image(img, name="close me")
        wdg.image.value = layer
        wdg.run()
        bench.wait(lambda: wdg._run is not None and wdg._run.stage != "", settle=0.5)
        bench.action("close the dock mid-run", "Z 40x1024x1024", dock.title.close_button.click,
                     settle=1.5)
        del wdg, dock
    if "train" in only:
        tw = TrainWidget(viewer)
        viewer.window.add_dock_widget(tw, name="Train (U-Net)")
        img, truth = stack(40, 1024)
        image = viewer.add_image(img, name="train Z")
        labels = viewer.add_labels(truth, name="train Z labels")
        tw.image.value, tw.labels.value = image, labels
        bench.action("Train: Add pair", "Z 40x1024x1024 + labels", tw.add_pair)
        tw.epochs.value, tw.steps.value, tw.batch_size.value, tw.crop_size.value = 1, 2, 2, 64
        tw.start_model.value = "new"
        tw.save_in.value = str(tmp / "models")
        bench.action("Train: Start (to model saved)", "Z 40x1024x1024 + labels", tw.train,
                     lambda: not tw.running)
    bench.table()
    viewer.close()


if __name__ == "__main__":
    main()
