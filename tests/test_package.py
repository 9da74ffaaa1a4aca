"""Packaging checks: a light top-level import, lazy attributes, a complete wheel."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG_SRC = ROOT / "src" / "napari_unet"

HEAVY_MODULES = ("torch", "napari", "qtpy", "PyQt6", "PySide6", "magicgui")


def test_import_is_light(tmp_path):
    """``import napari_unet`` loads neither torch nor any GUI stack."""
    code = (
        "import json, sys\n"
        "import napari_unet\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(json.dumps({'loaded': loaded,"
        " 'version_type': type(napari_unet.__version__).__name__,"
        " 'version': napari_unet.__version__}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"import napari_unet pulled in {result['loaded']}"
    assert result["version_type"] == "str"
    assert result["version"]


def test_sample_data_does_not_load_torch(tmp_path):
    """File > Open Sample reads two TIFFs: it must not pay for importing torch."""
    code = (
        "import sys\n"
        "from napari_unet._napari.sample_data import nuclei_sample\n"
        "layers = nuclei_sample()\n"
        "print(len(layers), 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "False"]


def test_lazy_attributes():
    import napari_unet

    unet_cls = napari_unet.UNet
    from napari_unet.model import UNet

    assert unet_cls is UNet
    assert "UNet" in dir(napari_unet)
    with pytest.raises(AttributeError, match="no_such_thing"):
        napari_unet.no_such_thing  # noqa: B018
    assert not hasattr(napari_unet, "definitely_not_public")


def test_napari_floor_has_what_the_widgets_use():
    """The installed metadata asks for a napari that has the APIs the widgets rely on.

    The widgets follow the layer list's ``renamed`` event (added in napari 0.7: with 0.5
    and 0.6 docking either widget fails with "'EmitterGroup' object has no attribute
    'renamed'") and copy ``Layer.units`` / ``Layer.axis_labels`` (napari 0.6) onto results.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    from napari_unet._napari.wiring import LAYER_EVENTS

    assert "renamed" in LAYER_EVENTS
    reqs = [Requirement(r) for r in metadata.requires("napari-unet-seg") or []]
    napari = [r for r in reqs if r.name == "napari" and r.marker is None]
    assert len(napari) == 1, reqs
    floors = [Version(s.version) for s in napari[0].specifier if s.operator in (">=", "~=", "==")]
    assert floors and min(floors) >= Version("0.7"), str(napari[0])


def _payload_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel once (hatchling, no isolation, no network: a few seconds)."""
    pytest.importorskip("hatchling", reason="hatchling is in the 'testing' extra")
    assert (ROOT / "napari.yaml").is_file(), (
        "napari.yaml is missing from the repository root "
        "(src/napari_unet/napari.yaml links to it)"
    )
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel",
            "--no-deps", "--no-build-isolation", "--no-index",
            "-q", "-w", str(out), str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("napari_unet_seg-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    return wheels[0]


def test_wheel_ships_manifest(wheel):
    root_manifest = ROOT / "napari.yaml"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "napari_unet/napari.yaml" in names
        info = zf.getinfo("napari_unet/napari.yaml")
        mode = info.external_attr >> 16
        assert not stat.S_ISLNK(mode), "napari.yaml is stored as a symlink in the wheel"
        assert zf.read(info) == root_manifest.read_bytes()

        entry_points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert len(entry_points) == 1
        text = zf.read(entry_points[0]).decode()
        assert "[napari.manifest]" in text
        assert "napari_unet:napari.yaml" in text


def test_wheel_ships_models(wheel):
    models = _payload_files(PKG_SRC / "models")
    assert any(p.name == "weights.safetensors" for p in models), "the bundled model is missing"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for path in models:
            arcname = path.relative_to(PKG_SRC.parent).as_posix()
            assert arcname in names, f"{arcname} is missing from the wheel"
            assert zf.getinfo(arcname).file_size == path.stat().st_size


def test_npe2_discovers_the_manifest_of_an_installed_wheel(wheel, tmp_path):
    """Install the wheel into a folder of its own and let npe2 find the plugin there."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)  # a wheel is a zip laid out as site-packages
    code = (
        "import npe2, napari_unet, pathlib, sys\n"
        "mf = npe2.PluginManifest.from_distribution('napari-unet-seg')\n"
        "assert mf.name == 'napari-unet-seg', mf.name\n"
        "assert pathlib.Path(napari_unet.__file__).parent.parent == pathlib.Path(sys.argv[1])\n"
        "print(sorted(c.id for c in mf.contributions.commands))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "napari-unet-seg.segment_widget" in proc.stdout
