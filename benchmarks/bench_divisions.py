"""How often tracks_table's parent_id finds a real division, and how often it makes one up.

    python benchmarks/bench_divisions.py [--seeds 20]

Synthetic movies of discs (a pixel in two goes to the one it lies deeper in, as a
watershed splits touching nuclei), each time point labelled on its own and then linked
(:func:`napari_unet.tracking.link_over_time`), as ``segment(link_time=True)``
gives them; every parent link :func:`napari_unet.tracks_table` reads is checked
against the movie's lineage. Four kinds of movie, ``--seeds`` of each:

- ``divide``: 128 x 128, 14 discs (radius 6-8) jittering by half a pixel, 12
  time points; each disc divides once with odds 0.6, at a random time point, into
  two discs of about half its area (radius r / sqrt(2), +-10 %) that move apart by
  1-2 pixels a time point along a random direction, from just touching or a little
  overlapping.
- ``jitter``: 5 x 5 touching discs (radius 5.5 +- 0.3, 11 pixels apart) jittering by
  a pixel, each missed by the segmentation in a time point with odds 0.15 (the
  test in tests/test_tracking.py). No division.
- ``vanish``: 6 x 6 discs (radius 5-7) packed so that neighbours overlap, drifting
  by up to a pixel a time point, each missed in a time point with odds 0.1, or
  shifted by 5-7 pixels for good (more than linking follows) with odds 0.03.
  No division.
- ``merge``: as ``vanish`` with no misses or shifts, but each pair of neighbours
  labelled as one object in a time point with odds 0.03 (split again the next).
  No division.

A link is true when the new track's first object is a daughter of the parent's
object in the time point before; the divisions to find are, per division, its
daughters that linking gave a new id (the one that kept the mother's, none).

20 seeds of each (5 s on one core), parent links found / links to find, and false
links / tracks:

| rule | divide | jitter | vanish | merge |
| --- | --- | --- | --- | --- |
| before | 180 / 180, 0 false | 8 / 1138 | 239 / 1572 | 263 / 984 |
| after | 180 / 180, 0 false | 1 / 1138 | 30 / 1572 | 43 / 984 |

Before: a fifth of the new object over a mother that goes on in her footprint, or ends with
two such. After: and each daughter (the mother's object going on among them) at most 0.8 of
the mother's pixels, the fewer of her last two time points.

The size alone, against the mother's last time point only, left 83 false in ``vanish`` and
250 in ``merge`` (a merged pair is twice a nucleus); 0.75 in place of 0.8 missed 2 divisions
for 24 and 40 false. What is left: a nucleus shifted onto its neighbour (both shrink, as
daughters do), pairs merged in the first time point or in two running, and linking that
swaps two neighbours' ids.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_unet.tracking import link_over_time, tracks_table

#: A frame's objects: (cells shown as this one object, [(centre y, centre x, radius), ...]).
Frame = list[tuple[tuple[str, ...], list[tuple[float, float, float]]]]


def _draw(frames: list[Frame], shape: tuple[int, int]) -> tuple[np.ndarray, list[dict[int, tuple[str, ...]]]]:
    """Labels (T, Y, X), each time point numbered from 1 in a random order, and per time point
    {id: the cells of that object}. Where discs overlap, a pixel goes to the disc it is deeper in
    (as a watershed splits touching nuclei)."""
    yy, xx = np.indices(shape)
    out = np.zeros((len(frames), *shape), np.int32)
    cells = []
    for t, objects in enumerate(frames):
        nearest = np.zeros(shape)  # a pixel in two discs goes to the one whose edge is further
        for k, (_, discs) in enumerate(objects, start=1):
            for cy, cx, r in discs:
                inside = np.hypot(yy - cy, xx - cx) - r
                out[t][inside < nearest] = k
                nearest = np.minimum(nearest, inside)
        present = set(np.unique(out[t]).tolist()) - {0}
        cells.append({k: objects[k - 1][0] for k in present})
    return out, cells


def _divide(rng: np.random.Generator, frames_n: int = 12, shape=(128, 128)):
    """Discs that divide: (frames, {daughter cell: mother cell})."""
    mothers = {}
    frames: list[Frame] = [[] for _ in range(frames_n)]
    grid = [(y, x) for y in range(16, shape[0] - 10, 28) for x in range(16, shape[1] - 10, 28)]
    for n, (gy, gx) in enumerate(grid[:14]):
        cy, cx = gy + rng.uniform(-3, 3), gx + rng.uniform(-3, 3)
        r = rng.uniform(6, 8)
        when = int(rng.integers(2, frames_n - 1)) if rng.random() < 0.6 else frames_n
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.sin(angle), np.cos(angle)])
        speed = rng.uniform(1, 2)
        rd = [r / np.sqrt(2) * rng.uniform(0.9, 1.1) for _ in range(2)]
        start = rng.uniform(0.75, 1.0)  # how far apart the daughters' centres start, in radii
        for t in range(frames_n):
            jy, jx = rng.normal(0, 0.5, 2)
            if t < when:
                frames[t].append(((f"{n}",), [(cy + jy, cx + jx, r + rng.normal(0, 0.2))]))
                continue
            gap = start * (rd[0] + rd[1]) / 2 + speed * (t - when)
            for side, radius in zip((-1, 1), rd):
                y, x = np.array([cy + jy, cx + jx]) + side * direction * gap
                frames[t].append(((f"{n}{'ab'[side > 0]}",), [(y, x, radius + rng.normal(0, 0.2))]))
            mothers[f"{n}a"] = mothers[f"{n}b"] = f"{n}"
    return frames, mothers, shape


def _jitter(rng: np.random.Generator, frames_n: int = 12, shape=(64, 64)):
    centres = [(cy, cx) for cy in range(10, 60, 11) for cx in range(10, 60, 11)]
    frames = [[((f"{k}",), [(cy + dy, cx + dx, 5.5 + dr)]) for k, (cy, cx) in enumerate(centres)
               for dy, dx, dr, seen in [(*rng.normal(0, (1, 1, 0.3)), rng.random())] if seen > 0.15]
              for _ in range(frames_n)]
    return frames, {}, shape


def _packed(rng: np.random.Generator, frames_n: int, shape, *, miss: float, shift: float, merge: float):
    centres = np.array([(cy, cx) for cy in range(12, 84, 12) for cx in range(12, 84, 12)], float)
    centres += rng.uniform(-1.5, 1.5, centres.shape)
    radii = rng.uniform(5, 7, len(centres))
    velocity = rng.uniform(-1, 1, centres.shape)
    neighbours = [(i, j) for i in range(len(centres)) for j in range(i + 1, len(centres))
                  if np.hypot(*(centres[i] - centres[j])) < 13]
    frames: list[Frame] = []
    for t in range(frames_n):
        now = centres + t * velocity + rng.normal(0, 0.5, centres.shape)
        discs = {i: (float(now[i, 0]), float(now[i, 1]), float(radii[i] + rng.normal(0, 0.2)))
                 for i in range(len(centres))}
        objects: Frame = []
        joined: set[int] = set()
        for i, j in neighbours:
            if i not in joined and j not in joined and rng.random() < merge:
                objects.append(((f"{i}", f"{j}"), [discs[i], discs[j]]))
                joined |= {i, j}
        for i in range(len(centres)):
            if rng.random() < shift:
                centres[i] += rng.uniform(5, 7) * np.array([1, -1])[rng.integers(2, size=2)]
            if i not in joined and rng.random() >= miss:
                objects.append(((f"{i}",), [discs[i]]))
        rng.shuffle(objects)
        frames.append(objects)
    return frames, {}, shape


def _vanish(rng, frames_n=12, shape=(96, 96)):
    return _packed(rng, frames_n, shape, miss=0.1, shift=0.03, merge=0.0)


def _merge(rng, frames_n=12, shape=(96, 96)):
    return _packed(rng, frames_n, shape, miss=0.0, shift=0.0, merge=0.03)


def score(frames: list[Frame], mothers: dict[str, str], shape) -> dict[str, int]:
    """Parent links found true, false, and the division links to find, of one movie."""
    drawn, cells = _draw(frames, shape)
    linked = link_over_time(drawn)
    ids = []  # per time point {linked id: cells}
    for t in range(len(frames)):
        ids.append({int(np.unique(linked[t][drawn[t] == k])[0]): c for k, c in cells[t].items()})
    table = tracks_table(linked, axes="TYX")
    first = {}
    for i, t, p in zip(table["track_id"].tolist(), table["t"].tolist(), table["parent_id"].tolist()):
        first.setdefault(i, (t, p))
    true = false = 0
    for i, (t, p) in first.items():
        if not p:
            continue
        if any(mothers.get(c) in ids[t - 1].get(p, ()) for c in ids[t][i]):
            true += 1
        else:
            false += 1
    to_find = 0
    for t in range(1, len(frames)):
        for i, c in ids[t].items():
            mother = [mothers.get(x) for x in c if mothers.get(x)]
            if first[i][0] == t and mother and any(mother[0] in m for m in ids[t - 1].values()):
                to_find += 1
    return {"true": true, "false": false, "to_find": to_find, "tracks": len(first)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    args = p.parse_args()
    start = time.perf_counter()
    for name, scene in [("divide", _divide), ("jitter", _jitter), ("vanish", _vanish), ("merge", _merge)]:
        total = {"true": 0, "false": 0, "to_find": 0, "tracks": 0}
        for seed in range(args.seeds):
            for key, value in score(*scene(np.random.default_rng(seed))).items():
                total[key] += value
        print(f"{name:7s} found {total['true']:4d} / {total['to_find']:4d}  false {total['false']:4d} "
              f"/ {total['tracks']:5d} tracks")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
