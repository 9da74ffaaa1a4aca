"""Experiment: a U-Net that also predicts, at each nucleus pixel, the way to its centre.

Not part of the package. Session 15 (2026-11-27) tried whether flows (the unit vector from
each nucleus pixel to its nucleus' centroid, two more output channels beside background /
interior / boundary) separate touching nuclei better than the watershed of the interiors.
The results are in the model card ("Tried ... not adopted").

    # on a GPU (reads the `train` split copy in .data/dsb_train), one fine-tune of the bundled model:
    python scripts/flows_experiment.py train --data .data/dsb_train --out runs --name B \
        --init default --modality fluorescence --seed 1 --minutes 8.5
    # on the CPU, scores on the 47 fluorescence `tune` images (never `val`):
    python scripts/flows_experiment.py eval --data .data/dsb_train --ckpt runs/B.pt \
        --variants ws,split:60:4:6

Variants: ``ws`` the package's watershed on the 3 classes; ``pure:N:C`` pixels grouped by the
sink they reach after N steps along the flows (sinks: 3x3 boxes reached by at least C pixels),
grown over the mask by a watershed; ``split:N:C:F`` the package's interior seeds, each cut
where its pixels reach different sinks (pieces under F pixels dropped), then the watershed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from train_default import split_ids

import napari_unet.training.data as tdata
from napari_unet.checkpoint import load_model
from napari_unet.model import UNet
from napari_unet.training.augment import augment_batch, collate_crops
from napari_unet.training.loop import segmentation_loss


def coded_samples(data: Path, names: list[str]) -> list[tdata.Sample]:
    """Samples whose target is class + 4 * instance id, so that crops carry both through the
    package's cropping and augmentation (nearest-neighbour zoom, flips and turns)."""
    labels = []
    samples = tdata.load_pairs(data / "images", data / "masks", names=names,
                               on_mask=lambda path, mask: labels.append(np.asarray(mask)))
    return [dataclasses.replace(s, target=s.target.astype(np.int32) + 4 * lab.astype(np.int32))
            for s, lab in zip(samples, labels, strict=True)]


def flow_targets(lab: torch.Tensor) -> torch.Tensor:
    """(N, S, S) ids -> (N, 2, S, S) unit vectors to each object's centroid (0 in background)."""
    n, h, w = lab.shape
    dev = lab.device
    yy, xx = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float32),
                            torch.arange(w, device=dev, dtype=torch.float32), indexing="ij")
    k = int(lab.max()) + 1
    ids = (lab + torch.arange(n, device=dev)[:, None, None] * k).reshape(-1)
    cnt = torch.bincount(ids, minlength=n * k).float().clamp(min=1)
    sy = torch.bincount(ids, weights=yy.expand(n, h, w).reshape(-1), minlength=n * k)
    sx = torch.bincount(ids, weights=xx.expand(n, h, w).reshape(-1), minlength=n * k)
    dy = (sy / cnt)[ids].view(n, h, w) - yy
    dx = (sx / cnt)[ids].view(n, h, w) - xx
    norm = torch.sqrt(dy * dy + dx * dx).clamp(min=1.0)
    fg = (lab > 0).float()
    return torch.stack([dy / norm * fg, dx / norm * fg], 1)


def make_net(init: str | None, width: int) -> UNet:
    net = UNet(spatial_dims=2, in_channels=1, out_channels=5, base_width=width, depth=4)
    if init:
        src = load_model(init).net.state_dict()
        own = net.state_dict()
        for key, val in src.items():
            if key.startswith("head."):
                own[key][:3] = val
                own[key][3:] = 0.0 if key == "head.bias" else own[key][3:] * 0.1
            else:
                own[key] = val
        net.load_state_dict(own)
    return net


def train(args) -> None:
    data = Path(args.data)
    fit, _ = split_ids(data, args.modality)
    t0 = time.perf_counter()
    samples = coded_samples(data, fit)
    print(f"loaded {len(samples)} in {time.perf_counter() - t0:.0f}s", flush=True)
    dev = torch.device(args.device)
    net = make_net(args.init, args.width).to(dev).train()
    optim = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    weights = tdata.sampling_weights(samples, "area")
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    amp = dev.type == "cuda"
    budget = args.minutes * 60
    start = time.perf_counter()
    step, avg, n_avg, mid = 0, None, 0, None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = []
    while True:
        frac = (time.perf_counter() - start) / budget
        if frac >= 1 or (args.steps and step >= args.steps):
            break
        lr = args.lr * (min(1.0, frac / 0.03) if not args.init else 1.0) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in optim.param_groups:
            g["lr"] = lr
        crops = tdata.random_crops(samples, rng, count=args.batch, size=args.crop, weights=weights)
        x, t = collate_crops(crops, dev)
        x, t = augment_batch(x, t, gen)
        cls, lab = t % 4, t // 4
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
        logits = logits.float()
        seg = segmentation_loss(logits[:, :3], cls)
        v = flow_targets(lab)
        fg = (lab > 0).float()[:, None]
        err = ((logits[:, 3:5] / 5.0 - v) ** 2).sum(1, keepdim=True)
        flow = (err * fg).sum() / fg.sum().clamp(min=1) + 0.1 * (err * (1 - fg)).mean()
        loss = seg + args.flow_weight * flow
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        if step % 100 == 0:
            log.append({"step": step, "frac": round(frac, 3), "seg": float(seg), "flow": float(flow)})
            print(json.dumps(log[-1]), flush=True)
        if frac > 2 / 3 and step % 20 == 0:  # average of the last third (every 20 steps)
            sd = {k: v.detach().float().cpu().clone() for k, v in net.state_dict().items()}
            if avg is None:
                avg, n_avg = sd, 1
            else:
                n_avg += 1
                for k in avg:
                    if avg[k].is_floating_point():
                        avg[k] += (sd[k] - avg[k]) / n_avg
                    else:
                        avg[k] = sd[k]
        if mid is None and frac > 0.75:
            mid = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    last = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    torch.save({"last": last, "avg": avg, "mid": mid, "width": args.width, "steps": step, "log": log},
               out / f"{args.name}.pt")
    print(f"done {step} steps in {time.perf_counter() - start:.0f}s", flush=True)


# ---------------------------------------------------------------- evaluation (CPU)

def run_net(net: UNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (1, Y, X) normalised -> probs (3, Y, X), flows (2, Y, X)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    t = torch.from_numpy(x)[None]
    t = F.pad(t, (0, pw, 0, ph), mode="reflect")
    with torch.no_grad():
        y = net(t)[0, :, :h, :w].float()
    return torch.softmax(y[:3], 0).numpy(), (y[3:5] / 5.0).numpy()


def follow(flows: np.ndarray, fg: np.ndarray, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """End positions (M, 2) int of the foreground pixels after ``n_iter`` steps along the flows."""
    h, w = fg.shape
    ys, xs = np.nonzero(fg)
    p = torch.from_numpy(np.stack([ys, xs], 1).astype(np.float32))
    fl = torch.from_numpy(np.ascontiguousarray(flows))[None]
    scale = torch.tensor([2.0 / max(h - 1, 1), 2.0 / max(w - 1, 1)])
    hi = torch.tensor([h - 1.0, w - 1.0])
    for _ in range(n_iter):
        g = (p * scale - 1.0).flip(1)[None, None]  # (1, 1, M, 2) as (x, y)
        f = F.grid_sample(fl, g, align_corners=True)[0, :, 0].T  # (M, 2) as (dy, dx)
        p = torch.minimum(torch.maximum(p + f, torch.zeros(2)), hi)
    return np.stack([ys, xs], 1), p.round().long().numpy()


def flow_instances(probs, flows, *, threshold=0.7, n_iter=60, min_size=24, min_count=4, mode="pure",
                   seed_threshold=0.8, frag=6):
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from napari_unet.instances import _fill_holes_per_label, _remove_small
    from napari_unet.postprocess import watershed_elevation

    fg = probs[0] < 1 - threshold
    if not fg.any():
        return np.zeros(fg.shape, np.int32)
    src, end = follow(flows, fg, n_iter)
    counts = np.zeros(fg.shape, np.int32)
    np.add.at(counts, (end[:, 0], end[:, 1]), 1)
    box = ndi.uniform_filter(counts.astype(np.float32), 3) * 9
    sinks, _ = ndi.label(box >= min_count)
    sink_of = sinks[end[:, 0], end[:, 1]]
    lab = np.zeros(fg.shape, np.int32)
    lab[src[:, 0], src[:, 1]] = sink_of
    elev = watershed_elevation(probs)
    if mode in ("split", "splitneck"):
        # seeds as the watershed pipeline makes them, each cut where its pixels flow to different
        # sinks; separate seeds are never joined
        from napari_unet.instances import split_seeds_at_necks
        seeds = probs[1] > seed_threshold
        comp, _ = ndi.label(seeds)
        if mode == "splitneck":
            comp = split_seeds_at_necks(seeds, neck_ratio=0.7)
        code = comp.astype(np.int64) * (int(lab.max()) + 1) + lab
        code[comp == 0] = 0
        _, inv = np.unique(code, return_inverse=True)
        markers = inv.reshape(code.shape).astype(np.int32)  # 0 stays 0 (smallest code)
        markers = _remove_small(markers, frag)
        # a seed left with no piece after the fragments went keeps itself whole
        gone = (comp > 0) & ~np.isin(comp, np.unique(comp[markers > 0]))
        markers = np.where(gone, comp + markers.max(), markers)
    else:
        # the sink groups, each cut to its largest connected piece, are the markers
        markers = lab
    if mode == "pure":
        markers = _remove_small(markers.astype(np.int32), min_size)
    out = watershed(elev, markers=markers, mask=fg, connectivity=1)
    out = _fill_holes_per_label(out.astype(np.int32))
    return _remove_small(out, min_size)


def evaluate(args) -> None:
    import tifffile

    from napari_unet.metrics import evaluate as score
    from napari_unet.normalize import normalize
    from napari_unet.training.tune import _instances

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    _, tune = split_ids(data, "fluorescence")
    images, masks = [], []
    for name in tune:
        img = tifffile.imread(data / "images" / f"{name}.tif")
        if img.ndim == 3:
            from napari_unet.normalize import luminance
            img = luminance(img, channel_axis=-1)
        images.append(normalize(img, low=1.0, high=99.8)[None].astype(np.float32))
        masks.append(tifffile.imread(data / "masks" / f"{name}.tif"))
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False) if args.ckpt != "bundled" else None
    variants = args.variants.split(",")
    for which in (["bundled"] if ck is None else args.which.split(",")):
        if ck is None:
            net3 = load_model("default").net.eval()
        else:
            if ck.get(which) is None:
                continue
            net = UNet(spatial_dims=2, in_channels=1, out_channels=5, base_width=ck["width"], depth=4)
            net.load_state_dict(ck[which])
            net.eval()
        results = {v: [] for v in variants}
        t0 = time.perf_counter()
        for x in images:
            if ck is None:
                with torch.no_grad():
                    h, w = x.shape[-2:]
                    t = F.pad(torch.from_numpy(x)[None], (0, (-w) % 16, 0, (-h) % 16), mode="reflect")
                    probs = torch.softmax(net3(t)[0, :, :h, :w], 0).numpy()
                flows = None
            else:
                probs, flows = run_net(net, x)
            for v in variants:
                if v == "ws":
                    params = {"threshold": 0.7, "seed_threshold": 0.8, "min_size": 24, "neck_ratio": 0.7}
                    results[v].append(_instances(probs, "three_class", params))
                else:
                    mode, n_iter, mc, *fr = v.split(":")
                    results[v].append(flow_instances(probs, flows, mode=mode, n_iter=int(n_iter),
                                                     min_count=int(mc), frag=int(fr[0]) if fr else 6))
        for v in variants:
            s = score(masks, results[v], thresholds=[0.5, 0.75, 0.9])
            t5 = s.totals[0]
            print(f"{args.ckpt}:{which} {v:16s} AP50 {t5.ap:.4f} AP75 {s.totals[1].ap:.4f} "
                  f"AP90 {s.totals[2].ap:.4f} TP {t5.tp} FP {t5.fp} FN {t5.fn}", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f}s)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--name", required=True)
    t.add_argument("--init", default=None)
    t.add_argument("--width", type=int, default=12)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--minutes", type=float, default=8)
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cuda")
    t.add_argument("--modality", default="all")
    t.add_argument("--flow-weight", type=float, default=1.0)
    e = sub.add_parser("eval")
    e.add_argument("--data", required=True)
    e.add_argument("--ckpt", required=True)
    e.add_argument("--which", default="last,avg,mid")
    e.add_argument("--variants", default="ws,split:60:4:6")
    e.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    train(args) if args.cmd == "train" else evaluate(args)


if __name__ == "__main__":
    main()
