"""Average the weights of a run's epoch snapshots into one model.

    python scripts/average_snapshots.py --run runs/nuclei3 --first 28 --last 38 --output runs/nuclei3_avg

The run must have been trained with ``--snapshots`` (train_default.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--first", type=int, required=True, help="first epoch to average (counted from 1)")
    p.add_argument("--last", type=int, required=True, help="last epoch to average")
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)

    from napari_unet.training.snapshots import average_models, snapshot_path

    folders = [snapshot_path(args.run, e) for e in range(args.first, args.last + 1)]
    average_models(folders, args.output)
    print(f"averaged epochs {args.first}-{args.last} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
