"""``python -m napari_unet``: the same command line as ``napari-unet``."""

import sys

from .cli import main

sys.exit(main())
