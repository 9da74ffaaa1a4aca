"""Where results go: replace untouched outputs, never overwrite what a user edited.

Each output layer the widget makes is remembered (weakly) with a fingerprint
of the data it was given. When new results for the same image arrive, an
output whose data still has that fingerprint is updated in place; one whose
data changed in any way (brush, fill, eraser, a script writing into the array,
new data assigned) is left alone and the result goes to a new layer named
``"<image> semantic [2]"`` and so on. Undoing every edit makes a layer
"untouched" again, as it should.

An update ("Update instances") that took in the edits made on the instances layer (see
:func:`~.jobs.relabel_job`), and whose labels hold them all as the user made them, replaces that
layer in place, as long as the layer still holds what the update took (edited while it ran, it
is left alone and the update goes to a new layer). One that split some of them again (the mask
changed round them) leaves the layer alone too. A user correcting in rounds (paint, update,
paint, update) keeps one pair.

A run's outputs stay a pair: when either of them holds the user's work (an
edit, or instances that "Update instances" made from an edited mask), a new
run puts both of its outputs in new layers, so the edited mask is never left
beside instances it did not make. An output the user renamed counts as their
work too (they named it to keep it): a new run leaves the pair alone, as it
leaves an edited one. Every pair of an image is remembered (the newest last),
so an earlier pair the user goes on correcting or renamed can still be updated
and measured.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Labels

from .layers import LayerDataTuple, _shear_matrix, create_layer

__all__ = ["fingerprint", "OutputTracker", "Published", "RunRecord"]

_PLACEMENT = ("scale", "translate", "units", "axis_labels")


_CHUNK = 1 << 24  # bytes hashed per task
_pool: ThreadPoolExecutor | None = None


def _sha1(chunk: memoryview) -> bytes:
    return hashlib.sha1(chunk, usedforsecurity=False).digest()


def fingerprint(data: Any) -> str | None:
    """A digest of an array's shape, dtype and bytes (None when it is not a numpy array).

    Axes of length 1 do not count in the shape: an output layer that keeps a one-plane
    channel axis (see :func:`~.layers.channel_placeholder`) has the digest of the result
    it shows, which the worker hashed without that axis.

    The bytes are hashed in 16 MiB chunks, on every core at once (hashlib lets go of the
    GIL), and the chunks' digests hashed in order: a big stack is hashed about as many
    times faster as there are cores, and the digest does not depend on their number.
    """
    global _pool
    if not isinstance(data, np.ndarray):
        return None
    # No adversary here, only edits to notice: SHA-1 hashes a big stack about 3x faster than BLAKE2b.
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(repr((tuple(n for n in data.shape if n != 1), data.dtype.str)).encode())
    raw = memoryview(np.ascontiguousarray(data)).cast("B")
    chunks = [raw[i:i + _CHUNK] for i in range(0, len(raw), _CHUNK)]
    if len(chunks) > 1:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                       thread_name_prefix="napari-unet-hash")
        parts = _pool.map(_sha1, chunks)
    else:
        parts = map(_sha1, chunks)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _same_placement(layer: Labels, key: str, value: Any) -> bool:
    """True when ``layer``'s ``key`` (scale ... affine) is exactly ``value`` already."""
    current = getattr(layer, key)
    if key in ("units", "axis_labels"):
        return tuple(map(str, current)) == tuple(map(str, value))
    if key == "affine":
        current = current.affine_matrix
    elif key == "shear":  # napari gives the upper-triangle coefficients; the layer kwargs a matrix
        current, value = _shear_matrix(current, layer.ndim), _shear_matrix(value, layer.ndim)
    current, value = np.asarray(current, dtype=float), np.asarray(value, dtype=float)
    return current.shape == value.shape and bool(np.array_equal(current, value))


@dataclass
class _Output:
    layer: weakref.ref
    digest: str | None
    auto_name: str  # "<image> <role>", from the image's name at the time
    from_edits: bool = False  # made from the user's edits (by "Update instances")
    given_name: str = ""  # the name the layer got ("<image> <role> [2]" where the first was taken)


@dataclass
class RunRecord:
    """The outputs last produced for one source image layer.

    Attributes
    ----------
    outputs : dict
        Role (``"semantic"``/``"instances"``) -> the layer and its fingerprint.
    label_ndim : int
        Trailing dimensions labelled together (3 for z-stacks, else 2).
    metadata : dict
        The engine's metadata of the run.
    instances : ndarray or None
        A private copy of the instance labels last made (by the run or an
        update), which "Update instances" keeps where the mask is unedited.
    instance_params : dict
        The ``method``, ``min_size``, ``fill_holes`` and ``linked`` (over time) that made ``instances``.
    instances_mask : str or None
        The :func:`fingerprint` of the semantic mask the instances output was made from (by the
        run, or by the last "Update instances"); None when not known.
    """

    outputs: dict[str, _Output] = field(default_factory=dict)
    label_ndim: int = 2
    metadata: dict[str, Any] = field(default_factory=dict)
    instances: np.ndarray | None = None
    instance_params: dict[str, Any] = field(default_factory=dict)
    made: list[tuple[str, weakref.ref]] = field(default_factory=list)  # every layer it put out
    instances_mask: str | None = None

    def layer(self, role: str) -> Labels | None:
        out = self.outputs.get(role)
        return None if out is None else out.layer()


@dataclass
class Published:
    """What :meth:`OutputTracker.publish` did.

    Attributes
    ----------
    layers : dict
        Role -> the layer now holding that output.
    kept : list of str
        Names of earlier outputs that held the user's work, left alone, which
        is why this run went to new layers (empty otherwise).
    renamed : list of str
        Those of ``kept`` that the user renamed (whether edited or not).
    """

    layers: dict[str, Labels]
    kept: list[str]
    renamed: list[str] = field(default_factory=list)


_TRACKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # viewer -> its OutputTracker


class OutputTracker:
    """Adds, replaces and remembers the output layers of one viewer.

    Parameters
    ----------
    viewer : napari.Viewer
        Held weakly: :meth:`of` keeps one tracker per viewer for as long as the viewer lives.
    """

    def __init__(self, viewer: Any) -> None:
        self._viewer_ref = weakref.ref(viewer)
        self._records: weakref.WeakKeyDictionary[Image, list[RunRecord]] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, viewer: Any) -> OutputTracker:
        """The one tracker of ``viewer``: a Segment widget closed and opened again (Plugins menu)
        goes on with the results, and the user's edits, that the closed one knew."""
        tracker = _TRACKERS.get(viewer)
        if tracker is None:
            tracker = _TRACKERS[viewer] = cls(viewer)
        return tracker

    @property
    def _viewer(self) -> Any:
        return self._viewer_ref()

    def record(self, source: Image) -> RunRecord | None:
        """The outputs last made from ``source`` (None if there are none)."""
        records = self._records.get(source)
        return records[-1] if records else None

    def owner(self, source: Image, layer: Any) -> tuple[RunRecord, str] | None:
        """The pair of ``source`` that put out ``layer`` (now or earlier) and its role, else None."""
        for rec in reversed(self._records.get(source) or []):
            for role, ref in rec.made:
                if ref() is layer:
                    return rec, role
        return None

    def source_of(self, layer: Any) -> Image | None:
        """The image one of whose pairs put out ``layer`` (now or earlier), else None."""
        for source, records in list(self._records.items()):
            if any(ref() is layer for rec in records for _, ref in rec.made):
                return source
        return None

    def pair_for(self, source: Image, role: str, prefer: Any = None) -> RunRecord | None:
        """The pair of ``source`` to work on: the one that put out ``prefer`` (e.g. the layer the
        user selected), else the newest whose ``role`` layer is still in the viewer. None when
        there is none, or when ``prefer``'s pair has no ``role`` layer left."""
        found = self.owner(source, prefer) if prefer is not None else None
        if found is not None:
            return found[0] if self._present(found[0].layer(role)) else None
        for rec in reversed(self._records.get(source) or []):
            if self._present(rec.layer(role)):
                return rec
        return None

    def _present(self, layer: Labels | None) -> bool:
        return layer is not None and layer in self._viewer.layers

    def is_edited(self, layer: Labels, digest: str | None) -> bool:
        """True when ``layer``'s data no longer matches what was put there."""
        return digest is None or fingerprint(layer.data) != digest

    def publish(
        self,
        source: Image,
        tuples: dict[str, LayerDataTuple],
        *,
        label_ndim: int | None = None,
        metadata: dict[str, Any] | None = None,
        from_edits: bool = False,
        holds_edits: bool | None = None,
        digests: dict[str, str] | None = None,
        record: RunRecord | None = None,
        mask_digest: str | None = None,
        taken: dict[str, str] | None = None,
    ) -> Published:
        """Show ``tuples`` (role -> layer data) as the outputs of ``source``.

        A new run (``from_edits=False``) goes to new layers, all of them, when
        any output of the last one holds the user's work: edited, or renamed (no
        longer the name it was given). ``from_edits=True`` (an update, which the
        user asked for on that pair) replaces only unedited layers, renamed ones too. ``holds_edits`` says whether
        the new layers hold the user's work, so that a new run keeps them (default:
        ``from_edits``; an update of an unedited mask holds none).
        ``digests`` (role -> :func:`fingerprint` of the data, computed off the
        GUI thread) spare hashing the new data again. ``record`` is the pair
        to update (one of ``source``'s; default: the newest). ``mask_digest`` is, for an
        update, the fingerprint of the mask its instances were made from (a run's instances
        were made from its semantic output). ``taken`` (role -> fingerprint), for an update, are
        the data it took in, the user's edits included (see :func:`~.jobs.relabel_job`): an
        edited layer that still holds exactly those data holds nothing the new data lack, and is
        updated in place like an unedited one (one edited since, or never put there by the
        widget, such as a result opened from files, is left alone as always).
        """
        records = self._records.setdefault(source, [])
        rec = record if record is not None else (records[-1] if records else None)
        if rec is None:
            rec = RunRecord()
            records.append(rec)
        # Each earlier output is hashed once: shown and untouched, or holding the user's work.
        untouched, work, renamed = set(), [], []
        for role, out in rec.outputs.items():
            layer = out.layer()
            if layer is None or layer not in self._viewer.layers:
                continue
            if from_edits and role not in tuples:
                continue  # an update replaces only its own roles, whatever the others hold
            if not from_edits and layer.name != out.given_name:
                renamed.append(layer.name)  # named by the user to keep it: a new run leaves it alone
                work.append(layer.name)
            elif self._holds_more(layer, out, (taken or {}).get(role) if from_edits else None):
                work.append(layer.name)
            else:
                untouched.add(role)
                if out.from_edits:
                    work.append(layer.name)
        fresh = bool(work) and not from_edits
        if fresh:  # a new pair; the one holding the user's work stays remembered
            rec = RunRecord(label_ndim=rec.label_ndim, metadata=dict(rec.metadata))
            records.append(rec)
        # Pairs the user deleted are forgotten (each holds a copy of its instances).
        records[:] = [r for r in records if r is rec or self._shown(r)]
        if label_ndim is not None:
            rec.label_ndim = int(label_ndim)
        if metadata is not None:
            rec.metadata = dict(metadata)
        holds = from_edits if holds_edits is None else holds_edits
        layers = {role: self._put(rec, role, data_tuple, replace=role in untouched and not fresh,
                                  from_edits=holds, digest=(digests or {}).get(role))
                  for role, data_tuple in tuples.items()}
        if "instances" in tuples:
            semantic = rec.outputs.get("semantic")
            rec.instances_mask = mask_digest if from_edits else (semantic.digest if semantic else None)
        return Published(layers, work if fresh else [], renamed if fresh else [])

    def adopt(self, source: Image, layers: dict[str, Labels], *, metadata: dict[str, Any],
              defaults: dict[str, Any] | None = None, opened: np.ndarray | None = None) -> RunRecord:
        """Take ``layers`` (role -> Labels layer), a result opened from files, as a pair of ``source``.

        Nothing says what the files hold since they were made (the user may have corrected
        them), so their data count as the user's work: a new run goes to new layers, and
        "Update instances" puts its instances in a new layer. The instances as opened, made
        with the options ``metadata`` records, are those whose ids an update keeps.
        ``defaults`` (``method``, ``min_size``: the widget's options) stand for those the
        metadata lacks: instances whose making is not recorded count as made with them, so an
        update with unchanged options keeps the ids of the objects the edits left alone.
        ``opened`` (a copy of the instances as they were opened, taken when their layer was added)
        stands for those made: the edits made on the layer since are then the user's, which
        an update takes; without it, the layer as it is now stands for them.
        """
        axes = str(metadata.get("axes") or "").upper().replace("C", "")
        rec = RunRecord(label_ndim=sum(a in "ZYX" for a in axes) or 2, metadata=dict(metadata))
        for role, layer in layers.items():
            rec.outputs[role] = _Output(weakref.ref(layer), None, layer.name, True, layer.name)
            rec.made.append((role, weakref.ref(layer)))
        instances = layers.get("instances")
        if instances is not None:
            rec.instances = (opened if opened is not None and opened.shape == np.shape(instances.data)
                             else np.array(instances.data, copy=True))
            recorded = {"method": metadata.get("instance_method"), "min_size": metadata.get("min_size")}
            rec.instance_params = {**{k: (defaults or {}).get(k) if v is None else v for k, v in recorded.items()},
                                   "fill_holes": metadata.get("fill_holes", True),
                                   "linked": bool(metadata.get("linked_over_time", False))}
        self._records.setdefault(source, []).append(rec)
        return rec

    def outdated_mask(self, instances: Any) -> Labels | None:
        """The semantic mask edited since ``instances`` were made from it, else None.

        Only for an instances output the user has not edited itself: those instances are
        the widget's split of the mask as it was, without the user's corrections since
        (which "Update instances" would bring in).
        """
        for records in list(self._records.values()):
            for rec in records:
                out = rec.outputs.get("instances")
                if out is None or out.layer() is not instances:
                    continue
                semantic = rec.layer("semantic")
                if (rec.instances_mask is None or not self._present(semantic)
                        or self.is_edited(instances, out.digest)):
                    return None
                return semantic if fingerprint(semantic.data) != rec.instances_mask else None
        return None

    def _holds_more(self, layer: Labels, out: _Output, taken: str | None) -> bool:
        """True when ``layer`` (``out``'s) holds work that new data would lose: edited since it
        was put there, unless its data are now those of fingerprint ``taken`` (which the new data
        were made from, edits and all). Each layer is hashed once."""
        if out.digest is None:
            return True
        now = fingerprint(layer.data)
        return now != out.digest and now != taken

    def _shown(self, rec: RunRecord) -> bool:
        """True while any output of ``rec`` is still in the viewer."""
        return any(self._present(rec.layer(role)) for role in rec.outputs)

    def _put(self, rec: RunRecord, role: str, data_tuple: LayerDataTuple, *, replace: bool,
             from_edits: bool, digest: str | None) -> Labels:
        data, kwargs, _ = data_tuple
        previous = rec.outputs.get(role)
        layers = self._viewer.layers
        given = None  # the name the widget gives it (None: the name it ends up with)
        if replace:
            old = previous.layer()
            if old.name != previous.given_name:
                given = previous.given_name  # renamed by the user (an update keeps their name): still theirs
            if old.ndim == np.ndim(data):
                layer = self._update(old, data, kwargs, previous)
            else:  # another axes choice: swap the untouched layer for a new one
                index = layers.index(old)
                name = old.name
                layers.remove(old)
                layer = create_layer((data, {**kwargs, "name": self._free_name(name)}, "labels"))
                layers.insert(index, layer)
        else:
            layer = create_layer((data, {**kwargs, "name": self._free_name(kwargs["name"])}, "labels"))
            self._viewer.add_layer(layer)
        if digest is None or layer.data is not data:
            digest = fingerprint(layer.data)
        rec.outputs[role] = _Output(weakref.ref(layer), digest, kwargs["name"], from_edits, given or layer.name)
        if not any(ref() is layer for _, ref in rec.made):
            rec.made.append((role, weakref.ref(layer)))
        return layer

    def _update(self, layer: Labels, data: np.ndarray, kwargs: dict[str, Any], previous: _Output) -> Labels:
        ndim = np.ndim(data)
        # Only the placement that changed is set: each of these setters makes napari render a
        # shown layer's whole slice again on the GUI thread (about 0.1 s for a 4096 x 4096 result).
        placement = {
            **{key: kwargs[key] for key in _PLACEMENT},
            "rotate": kwargs.get("rotate", np.eye(ndim)),
            "shear": kwargs.get("shear", np.eye(ndim)),
            "affine": kwargs.get("affine", np.eye(ndim + 1)),
        }
        for key, value in placement.items():
            if not _same_placement(layer, key, value):
                setattr(layer, key, value)
        layer.metadata = dict(kwargs["metadata"])
        layer.data = data
        if layer.features.shape[1]:
            layer.features = {}  # measurements of the objects replaced (Measure objects): stale now
        if layer.name == previous.given_name and kwargs["name"] != previous.auto_name:
            layer.name = self._free_name(kwargs["name"])  # the source was renamed (the user's name stays)
        return layer

    def _free_name(self, base: str) -> str:
        names = {layer.name for layer in self._viewer.layers}
        if base not in names:
            return base
        n = 2
        while f"{base} [{n}]" in names:
            n += 1
        return f"{base} [{n}]"
