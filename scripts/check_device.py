"""Check the engine on an accelerator: device choice, and CPU vs device agreement.

    python scripts/check_device.py MODEL_DIR IMAGE.tif
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> int:
    import torch

    from napari_unet.device import resolve_device
    from napari_unet.io import read_image
    from napari_unet.predict import predict

    model, image_path = sys.argv[1], sys.argv[2]
    image = read_image(image_path)
    dev = resolve_device("auto")
    print("auto device:", dev, torch.__version__, torch.cuda.get_device_name() if dev.type == "cuda" else "")
    p_cpu = predict(image, model, device="cpu")
    p_dev = predict(image, model, device=str(dev))
    print("max |cpu - device| probability:", float(np.abs(p_cpu - p_dev).max()))
    big = np.tile(image if image.ndim == 2 else image[..., 0], (4, 4))[:1024, :1024]
    for name in ("cpu", str(dev)):
        predict(big, model, device=name)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            predict(big, model, device=name)
            times.append(time.perf_counter() - t)
        print(f"1024x1024 predict on {name}: median {np.median(times):.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
