"""Model files: round trips, broken files, and weights that must never be unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.checkpoint import (
    CONFIG,
    FORMAT_VERSION,
    WEIGHTS,
    LoadedModel,
    ModelConfig,
    load_model,
    save_model,
)
from napari_unet.errors import SegmentationError


@pytest.fixture
def saved(tmp_path, helpers) -> Path:
    return helpers.build_model(tmp_path / "saved", out_channels=3, seed=7)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder: Path, **changes) -> None:
    data = json.loads((folder / CONFIG).read_text())
    data.update(changes)
    (folder / CONFIG).write_text(json.dumps(data))


# --- round trip ------------------------------------------------------------------------

def test_round_trip(tmp_path):
    cfg = ModelConfig(base_width=4, depth=2, out_channels=3, target="semantic",
                      classes=["background", "a", "b"], name="tiny", pixel_size_um=0.65, core_fraction=0.3,
                      provenance={"trained_on": "synthetic"})
    torch.manual_seed(0)
    net = cfg.build().eval()
    folder = save_model(tmp_path / "m", net, cfg)
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG, WEIGHTS])  # no temp files left
    loaded = load_model(folder)
    assert isinstance(loaded, LoadedModel)
    assert loaded.config == cfg
    assert loaded.name == "tiny"
    assert loaded.path == folder
    assert not loaded.net.training
    x = torch.randn(2, 1, 16, 20)
    with torch.no_grad():
        assert torch.equal(net(x), loaded.net(x))


def test_save_model_writes_nothing_load_model_would_refuse(tmp_path):
    cfg = ModelConfig(base_width=4, depth=2)
    net = cfg.build()
    cfg.postprocess["threshold"] = 1.0  # changed after the checks ran
    with pytest.raises(SegmentationError, match="threshold 1.0"):
        save_model(tmp_path / "m", net, cfg)
    cfg.postprocess["threshold"] = 0.5
    cfg.provenance["score"] = np.float32(0.9)  # JSON cannot hold it
    with pytest.raises(SegmentationError, match="cannot be saved.*float32"):
        save_model(tmp_path / "m", net, cfg)
    assert not (tmp_path / "m").exists()
    cfg.provenance["score"] = 0.9
    assert load_model(save_model(tmp_path / "m", net, cfg)).config.provenance["score"] == 0.9


def test_a_save_on_a_full_disk_says_so_and_keeps_the_model_there(saved, monkeypatch):
    """A full disk is foreseen: one message naming the folder (not an "unexpected" error), no
    temporary files, and the model already there as it was."""
    import errno

    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    real = Path.write_text

    def full(self, *args, **kwargs):
        real(self, "{")  # part written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    model = load_model(saved)
    with pytest.raises(SegmentationError, match=f"Cannot save the model in {saved} .*No space left"):
        save_model(saved, model.net, model.config)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before


def test_saved_files_follow_the_umask(tmp_path):
    """A model folder is shared with colleagues: not owner-only like a temporary file."""
    import stat

    cfg = ModelConfig(base_width=4, depth=2)
    old = os.umask(0o022)
    try:
        folder = save_model(tmp_path / "m", cfg.build(), cfg)
    finally:
        os.umask(old)
    for name in (CONFIG, WEIGHTS):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644


def test_save_model_sends_its_files_and_folder_to_the_disk(tmp_path, disk_syncs, helpers):
    """Renamed before their bytes reach the disk, the files can be empty after a power cut; a save
    over an earlier model too."""
    cfg = ModelConfig(base_width=4, depth=2)
    save_model(tmp_path / "m", cfg.build(), cfg)
    folder = save_model(tmp_path / "m", cfg.build(), cfg)
    for name in (WEIGHTS, CONFIG):
        helpers.assert_durable(disk_syncs, folder / name)


def test_sha256_is_the_weights_file_hash_and_stable(saved, tmp_path):
    first = load_model(saved)
    digest = hashlib.sha256((saved / WEIGHTS).read_bytes()).hexdigest()
    assert first.sha256 == digest
    assert first.short_hash == digest[:12]
    assert load_model(saved).sha256 == digest
    # Saving the same weights again writes the same bytes, every time (a file
    # whose header order varied between saves would fail this about always).
    for i in range(8):
        again = save_model(tmp_path / f"again{i}", first.net, first.config)
        assert load_model(again).sha256 == digest
    # Different weights, different hash.
    with torch.no_grad():
        first.net.head.bias.add_(1.0)
    changed = save_model(tmp_path / "changed", first.net, first.config)
    assert load_model(changed).sha256 != digest


def test_load_from_files_inside_the_folder(saved):
    ref = load_model(saved)
    for target in (saved / CONFIG, saved / WEIGHTS, str(saved)):
        m = load_model(target)
        assert m.sha256 == ref.sha256 and m.config == ref.config
    assert load_model(ref) is ref
    assert ref.name == "saved"  # the folder's name when the config names none...
    _edit_config(saved, name="renamed")
    assert load_model(saved).name == "renamed"  # ...the config's name otherwise


def test_a_loaded_model_prints_as_one_line_of_what_it_is(saved):
    """``print(model)`` in a notebook says which model and weights, in one line, not every layer."""
    model = load_model(saved)
    text = repr(model)
    assert "\n" not in text and len(text) < 400
    for part in ("name='saved'", str(saved), model.short_hash, "2D U-Net", "in_channels=1",
                 str(model.config.classes), "threshold"):
        assert part in text
    assert "Conv2d" not in text
    assert "Conv2d" in repr(model.net)  # the layers are one attribute away


def test_config_defaults_and_validation():
    cfg = ModelConfig()
    assert cfg.format_version == FORMAT_VERSION
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SegmentationError, match="classes"):
        ModelConfig(out_channels=3)  # 2 class names by default
    with pytest.raises(SegmentationError, match="3 output channels"):
        ModelConfig(target="three_class", out_channels=2)
    with pytest.raises(SegmentationError, match="target"):
        ModelConfig(target="regression")


def test_foreign_pytorch_state_dict(saved, tmp_path):
    """A .pt state dict with a config.json beside it is imported (weights_only)."""
    ref = load_model(saved)
    folder = tmp_path / "foreign"
    folder.mkdir()
    shutil.copy(saved / CONFIG, folder / CONFIG)
    torch.save(ref.net.state_dict(), folder / "model.pt")
    torch.save({"state_dict": ref.net.state_dict()}, folder / "wrapped.pth")
    x = torch.randn(1, 1, 8, 8)
    for name in ("model.pt", "wrapped.pth"):
        m = load_model(folder / name)
        with torch.no_grad():
            assert torch.equal(m.net(x), ref.net(x))


# --- broken model files -----------------------------------------------------------------

def test_corrupt_weights(saved, tmp_path):
    folder = _copy(saved, tmp_path / "corrupt")
    (folder / WEIGHTS).write_bytes(os.urandom(4096))
    with pytest.raises(SegmentationError, match="corrupt, truncated or not a safetensors"):
        load_model(folder)


@pytest.mark.parametrize("keep", [0, 5, 100, 0.5, -1])
def test_truncated_weights(saved, tmp_path, keep):
    folder = _copy(saved, tmp_path / "truncated")
    data = (folder / WEIGHTS).read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    (folder / WEIGHTS).write_bytes(data[:n])
    with pytest.raises(SegmentationError, match="corrupt, truncated") as info:
        load_model(folder)
    assert str(folder / WEIGHTS) in str(info.value)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"depth": 3}, "do not fit the architecture"),
        ({"depth": 1}, "do not fit the architecture"),
        ({"base_width": 8}, "do not fit the architecture"),
        ({"in_channels": 2}, "do not fit the architecture"),
        ({"spatial_dims": 3}, "do not fit the architecture"),
    ],
)
def test_wrong_architecture(saved, tmp_path, changes, fragment):
    folder = _copy(saved, tmp_path / "wrong")
    _edit_config(folder, **changes)
    with pytest.raises(SegmentationError, match=fragment) as info:
        load_model(folder)
    assert "another model" in str(info.value)


def test_missing_config(saved, tmp_path):
    folder = _copy(saved, tmp_path / "noconfig")
    (folder / CONFIG).unlink()
    with pytest.raises(SegmentationError, match="No config.json"):
        load_model(folder)


def test_missing_weights(saved, tmp_path):
    folder = _copy(saved, tmp_path / "noweights")
    (folder / WEIGHTS).unlink()
    with pytest.raises(SegmentationError, match="weights .* are missing"):
        load_model(folder)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "unreadable or not JSON"),
        (b"\xff\xfe\x00garbage", "unreadable or not JSON"),
        ("[1, 2, 3]", "must hold a JSON object"),
        ("", "unreadable or not JSON"),
    ],
)
def test_unreadable_config(saved, tmp_path, text, fragment):
    folder = _copy(saved, tmp_path / "badjson")
    if isinstance(text, bytes):
        (folder / CONFIG).write_bytes(text)
    else:
        (folder / CONFIG).write_text(text)
    with pytest.raises(SegmentationError, match=fragment):
        load_model(folder)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, "1", None])
def test_unknown_format_version(saved, tmp_path, version):
    folder = _copy(saved, tmp_path / "future")
    _edit_config(folder, format_version=version)
    with pytest.raises(SegmentationError, match="format version .* is not supported") as info:
        load_model(folder)
    assert "Update napari-unet-seg" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"colour": "red"}, "Unknown keys"),
        ({"classes": ["only one"]}, "classes"),
        ({"target": "regression"}, "target"),
        ({"depth": "two"}, "invalid"),
        ({"base_width": None}, "invalid"),
        ({"classes": None}, "invalid"),
        ({"spatial_dims": 5}, "invalid"),
        ({"core_fraction": 1.5}, "core_fraction"),
        ({"core_fraction": "deep"}, "invalid"),
    ],
)
def test_invalid_config_values(saved, tmp_path, changes, fragment):
    folder = _copy(saved, tmp_path / "invalid")
    _edit_config(folder, **changes)
    with pytest.raises(SegmentationError, match=fragment):
        load_model(folder)


def test_missing_model_path(tmp_path):
    with pytest.raises(SegmentationError, match="not found") as info:
        load_model(tmp_path / "does-not-exist")
    assert "config.json" in str(info.value)


# --- weights are never unpickled ----------------------------------------------------------

class _Exploit:
    """Unpickling this calls ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def exploit(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"stem.0.weight": _Exploit(marker)})
    # The payload is live: plain unpickling does create the marker.
    pickle.loads(payload).popitem()[1].close()
    assert marker.exists()
    marker.unlink()
    return marker, payload


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("filename", [WEIGHTS, "model.pt", "model.pth"])
@pytest.mark.parametrize("how", ["raw pickle", "torch.save"])
def test_malicious_pickle_is_never_executed(saved, tmp_path, exploit, filename, how):
    marker, payload = exploit
    folder = tmp_path / "evil"
    folder.mkdir()
    shutil.copy(saved / CONFIG, folder / CONFIG)
    target = folder / filename
    if how == "raw pickle":
        target.write_bytes(payload)
    else:
        torch.save({"stem.0.weight": _Exploit(marker)}, target)
    assert not marker.exists()
    with pytest.raises(SegmentationError) as info:
        load_model(target if filename != WEIGHTS else folder)
    assert not marker.exists(), "loading a model file ran code from a pickle"
    message = str(info.value)
    assert str(target) in message
    if filename != WEIGHTS:
        assert "never arbitrary pickled objects" in message


def test_pt_file_with_non_tensors(saved, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(saved / CONFIG, folder / CONFIG)
    torch.save({"stem.0.weight": 3, "note": "hello"}, folder / "model.pt")
    with pytest.raises(SegmentationError, match="state dict of tensors"):
        load_model(folder / "model.pt")


def test_a_training_state_beside_a_model_says_to_choose_the_model(saved, tmp_path):
    """A trained model's folder holds train_state.pt too, which a file dialog's '*.pt' shows
    beside config.json: picked by mistake, the message points at the model."""
    folder = _copy(saved, tmp_path / "trained")
    torch.save({"epoch": 10, "net": {"w": torch.zeros(1)}, "optimizer": {}}, folder / "train_state.pt")
    with pytest.raises(SegmentationError, match="state dict of tensors") as info:
        load_model(folder / "train_state.pt")
    assert f"choose {folder / CONFIG}" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"postprocess": None}, "mapping"),
        ({"postprocess": {"threshold": "high"}}, r"postprocess\['threshold'\] is 'high'"),
        ({"postprocess": {"seed_threshold": 1.5}}, "seed_threshold"),
        ({"postprocess": {"min_size": -3}}, "min_size"),
        ({"postprocess": {"min_size": 10.5}}, "whole number of pixels"),
        ({"postprocess": {"threshold": 1.0}}, "threshold 1.0 and min_size"),
        ({"postprocess": {"instance_method": "magic"}}, "instance_method"),
        ({"postprocess": {"fill_holes": "false"}}, r"postprocess\['fill_holes'\] is 'false'"),
        ({"postprocess": {"neck_ratio": "x"}}, r"postprocess\['neck_ratio'\] is 'x'"),
        ({"postprocess": {"neck_ratio": 5}}, r"postprocess\['neck_ratio'\] is 5"),
        ({"postprocess": {"neck_ratio": True}}, r"postprocess\['neck_ratio'\] is True"),
        ({"postprocess": {"neck_ratio": 1.0}}, "must be below 1"),
        ({"postprocess": {"auto_scale_area": "x"}}, r"postprocess\['auto_scale_area'\] is 'x'"),
        ({"postprocess": {"auto_scale_area": None}}, r"postprocess\['auto_scale_area'\] is None"),
        ({"postprocess": {"auto_scale_factor": 0}}, r"postprocess\['auto_scale_factor'\] is 0"),
        ({"postprocess": {"scale": 0}}, r"postprocess\['scale'\] is 0"),
        ({"normalization": {"low": "a"}}, r"normalization\['low'\]"),
        ({"normalization": {"low": 99.0, "high": 1.0}}, "below"),
        ({"name": None}, "name None and description must be text"),
        ({"classes": "abc"}, "classes must be a list of names"),
        ({"pixel_size_um": "x"}, "pixel_size_um is 'x'"),
        ({"pixel_size_um": 0}, "pixel_size_um is 0"),
    ],
)
def test_bad_inference_settings_are_refused_on_load(saved, tmp_path, changes, fragment):
    """Settings inference would trip over later are named when the model is opened."""
    folder = _copy(saved, tmp_path / "bad")
    _edit_config(folder, **changes)
    with pytest.raises(SegmentationError, match=fragment):
        load_model(folder)


def test_scale_auto_in_a_config_is_read_as_segment_reads_it(saved, tmp_path):
    folder = _copy(saved, tmp_path / "auto")
    data = json.loads((folder / CONFIG).read_text())
    data["postprocess"].update(scale="Auto", auto_scale_area=150)
    (folder / CONFIG).write_text(json.dumps(data))
    assert load_model(folder).config.postprocess["scale"] == "Auto"


def test_settings_a_config_leaves_out_take_their_defaults(saved, tmp_path):
    folder = _copy(saved, tmp_path / "sparse")
    _edit_config(folder, postprocess={"threshold": 0.6}, normalization={"high": 99.9})
    config = load_model(folder).config
    assert config.postprocess["threshold"] == 0.6 and config.postprocess["seed_threshold"] == 0.5
    assert config.normalization == {"method": "percentile", "low": 1.0, "high": 99.9}


def test_a_model_that_loads_also_segments(saved, tmp_path):
    """What the config check lets through, segment accepts: seeds at 0 or 1, a min_size of 16.0."""
    import napari_unet

    folder = _copy(saved, tmp_path / "edge")
    for seed in (0.0, 1.0):
        _edit_config(folder, postprocess={"seed_threshold": seed, "min_size": 16.0})
        result = napari_unet.segment(np.random.default_rng(0).random((32, 32)), model=str(folder))
        assert result.metadata["seed_threshold"] == seed and result.metadata["min_size"] == 16


def test_a_local_folder_named_like_a_bundled_model_is_not_shadowed(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _copy(saved, tmp_path / "nuclei")
    with pytest.raises(SegmentationError, match=r"'\./nuclei'.*'default'"):
        load_model("nuclei")
    assert load_model("./nuclei").sha256 == load_model(saved).sha256
    assert load_model("default").config.name == "nuclei"  # the bundled one
    # The napari widgets' choice of the bundled model is a path, never shadowed.
    from napari_unet._napari.model_choices import ModelCatalog

    catalog = ModelCatalog()
    assert catalog.get(catalog.default_key()).sha256 == load_model("default").sha256
    _copy(saved, tmp_path / "default")
    assert load_model("default").sha256 != load_model("./default").sha256  # "default" is the keyword


def test_save_model_mistakes_are_a_clear_error(saved, tmp_path):
    """A LoadedModel given as the network, a config given as a dict, or a folder that is a
    file: each says what to give, not an AttributeError or FileExistsError."""
    model = load_model(saved)
    with pytest.raises(SegmentationError, match=r"model\.net, model\.config"):
        save_model(tmp_path / "a", model, model.config)
    with pytest.raises(SegmentationError, match="ModelConfig"):
        save_model(tmp_path / "b", model.net, model.config.to_dict())
    a_file = tmp_path / "c"
    a_file.write_text("not a folder")
    with pytest.raises(SegmentationError, match="is a file"):
        save_model(a_file, model.net, model.config)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_save_model_refuses_a_network_its_config_does_not_describe(saved, tmp_path):
    """A config edited to another depth (or width) beside the old network would save a model
    that load_model refuses; nothing is written."""
    model = load_model(saved)
    config = ModelConfig.from_dict({**model.config.to_dict(), "depth": model.config.depth + 1})
    with pytest.raises(SegmentationError, match="does not fit"):
        save_model(tmp_path / "m", model.net, config)
    assert not (tmp_path / "m").exists()
