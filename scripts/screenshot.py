"""Screenshot of the Segment widget at work on the sample image, for the docs.

Opens a real napari window (run it under a display, e.g.
``xvfb-run -a --server-args="-screen 0 1600x1000x24" python scripts/screenshot.py``),
opens File > Open Sample > Nuclei (DSB2018) (U-Net Segmentation), docks the
Segment widget from the plugin manifest, runs it with the bundled default
model, waits for the result and saves the whole window as a PNG.

Usage::

    python scripts/screenshot.py [--model PATH] [--fallback-model PATH] [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-unet-seg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder to use instead of the bundled default model")
    parser.add_argument("--fallback-model", type=Path, default=ROOT / ".runs" / "nuclei_gpu1",
                        help="model folder used when the bundled model is absent (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png",
                        help="PNG to write (default: %(default)s)")
    parser.add_argument("--size", default="1440x820", help="window size WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="device for the network (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the result")
    return parser.parse_args(argv)


def wait_for(widget, app, timeout: float) -> float:
    """Turn the Qt event loop until the widget's run is over; return the seconds it took."""
    start = time.perf_counter()
    while widget.running:
        if time.perf_counter() - start > timeout:
            widget.cancel()
            raise SystemExit(f"The segmentation took more than {timeout:.0f} s; cancelled.")
        app.processEvents()
        time.sleep(0.01)
    return time.perf_counter() - start


def settle(app, seconds: float = 0.5) -> None:
    """Let the window lay itself out and the canvas draw."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import napari
    from qtpy.QtWidgets import QApplication

    width, height = (int(v) for v in args.size.lower().split("x"))
    viewer = napari.Viewer(title="napari-unet-seg: Segment (U-Net)", show=True)
    viewer.window.resize(width, height)
    app = QApplication.instance()
    viewer.open_sample(PLUGIN, "nuclei")
    viewer.layers["nuclei ground truth"].visible = False
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment (U-Net)")
    model = args.model
    if model is None and widget.model.value is None:
        model = args.fallback_model
        print(f"The bundled model is absent: using {model}")
    if model is not None and not widget.add_model(str(model)):
        print(f"Could not open the model {model}", file=sys.stderr)
        return 1
    widget.device.value = args.device if args.device in widget.device.choices else "auto"
    settle(app)
    widget.run()
    seconds = wait_for(widget, app, args.timeout)
    instances = viewer.layers["nuclei instances"]
    print(f"Segmented 'nuclei' {viewer.layers['nuclei'].data.shape} with model "
          f"{instances.metadata['model']!r} on {instances.metadata['device']} in {seconds:.2f} s "
          f"(in the viewer, from Run to layers shown): {int(instances.data.max())} nuclei "
          f"(ground truth: {int(viewer.layers['nuclei ground truth'].data.max())}).")
    viewer.layers.selection.active = instances
    viewer.reset_view()
    settle(app, 1.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print(f"Wrote {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
