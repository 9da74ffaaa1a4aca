"""Weight averaging: one model from the snapshots of several epochs.

The average of the weights after each of the last epochs of a run (as in
stochastic weight averaging) often segments a little better than any single
epoch. :func:`~napari_unet.training.loop.iter_train` keeps one snapshot per
epoch with ``snapshots=True``, in ``<output>/snapshots/epoch_NNN``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import LoadedModel, load_model, save_model
from ..errors import SegmentationError

__all__ = ["SNAPSHOTS", "snapshot_path", "average_models"]

SNAPSHOTS = "snapshots"


def snapshot_path(output: str | os.PathLike, epoch: int) -> Path:
    """Folder of the snapshot taken after ``epoch`` (counted from 1) of the run in ``output``."""
    return Path(output) / SNAPSHOTS / f"epoch_{epoch:03d}"


def average_models(models: Sequence[LoadedModel | str | os.PathLike], dest: str | os.PathLike) -> LoadedModel:
    """Average the weights of models of one architecture and save the result in ``dest``.

    Float tensors (weights, batch-norm statistics) are averaged; integer
    ones (batch-norm step counters) are taken from the last model. The config
    is the last model's.

    Parameters
    ----------
    models : sequence of LoadedModel or model folders, at least one
    dest : folder for the averaged model

    Returns
    -------
    LoadedModel
        The averaged model, as saved.
    """
    if not models:
        raise SegmentationError("No models to average: give at least one.")
    loaded = [load_model(m) for m in models]
    states = [m.net.state_dict() for m in loaded]
    last = states[-1]
    for m, state in zip(loaded, states):
        if state.keys() != last.keys() or any(state[k].shape != last[k].shape for k in last):
            raise SegmentationError(
                f"Model {m.name} has another architecture than {loaded[-1].name}: only snapshots "
                "of one network can be averaged.")
    mean = {
        k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
        for k, v in last.items()
    }
    net = copy.deepcopy(loaded[-1].net)  # the caller's models stay as they are
    net.load_state_dict(mean)
    save_model(dest, net, loaded[-1].config)
    return load_model(dest)
