#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for napari-unet-seg development and CI.
#
#   bash scripts/setup.sh
#
# 1. Debian packages for a virtual X display with Mesa OpenGL and Qt6's xcb
#    platform plugin (only when running as root and something is missing).
# 2. A virtual environment in <repo>/.venv (python3 >= 3.10, or $PYTHON).
# 3. torch==2.13.0+cpu first (found locally, else from the PyTorch CPU index), then the project
#    in editable mode with its "testing" extra.
#
# Re-running is cheap: apt is skipped when every package is installed, and the
# pip steps are skipped while pyproject.toml is unchanged since the last
# successful run (set NAPARI_UNET_FORCE_SETUP=1 to redo them anyway).
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION="2.13.0"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. system packages ------------------------------------------------------
APT_PACKAGES=(
  xvfb xauth
  libgl1 libegl1 libopengl0 libgl1-mesa-dri
  libglib2.0-0 libfontconfig1 libdbus-1-3
  libxkbcommon0 libxkbcommon-x11-0
  libx11-xcb1 libxcb1 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0
  libxcb-cursor0 libxcb-xkb1 libxcb-sync1
  libxrender1 libxi6
)

# Debian's python3 cannot make a virtual environment without python3-venv.
if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  APT_PACKAGES+=(python3-venv)
fi

missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
      missing+=("$pkg")
    fi
  done
fi

if ((${#missing[@]})); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "WARNING: missing Debian packages (need root to install): ${missing[*]}"
  fi
fi

# --- 2. virtual environment --------------------------------------------------
venv_ok() {
  [[ -x "$VENV/bin/python" ]] &&
    "$VENV/bin/python" -c 'import sys; raise SystemExit(sys.version_info < (3, 10))' 2>/dev/null
}

if ! venv_ok; then
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "ERROR: $PYTHON not found (need Python >= 3.10; set PYTHON=...)"
    exit 1
  fi
  if ! "$PYTHON" -c 'import sys; raise SystemExit(sys.version_info < (3, 10))'; then
    log "ERROR: $PYTHON is $("$PYTHON" -V 2>&1); need Python >= 3.10 (set PYTHON=...)"
    exit 1
  fi
  log "creating $VENV with $("$PYTHON" -V 2>&1)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi

PY="$VENV/bin/python"

# --- 3. Python packages ------------------------------------------------------
STAMP="$VENV/.napari-unet-setup"
want_stamp="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $("$PY" -V 2>&1)"

if [[ "${NAPARI_UNET_FORCE_SETUP:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] &&
  "$PY" -c 'import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ("torch", "napari", "napari_unet", "pytest", "hatchling")))' >/dev/null 2>&1; then
  log "environment up to date ($VENV)"
  exit 0
fi

# pip, quiet, without the notes about local package folders that lack a
# package; with pipefail a failing pip still fails the script.
pip_install() {
  "$PY" -m pip install -q "$@" 2>&1 |
    { grep -v "^WARNING: Location 'file:.*' is ignored" || true; }
}

rm -f "$STAMP"
log "upgrading pip"
pip_install --upgrade pip
# torch first, pinned to the CPU build: a bare "torch" requirement would pull a
# multi-GB CUDA build on Linux. On the machines we test on pip finds the +cpu wheel
# locally; elsewhere it comes from the PyTorch CPU index.
log "installing torch $TORCH_VERSION (CPU build)"
if ! pip_install "torch==$TORCH_VERSION+cpu"; then
  log "no torch==$TORCH_VERSION+cpu where pip looks: trying the PyTorch CPU index"
  pip_install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi
log "installing napari-unet-seg[testing] (editable)"
pip_install -e ".[testing]"
printf '%s\n' "$want_stamp" >"$STAMP"
log "done: $("$PY" -c 'import torch, napari_unet; print("torch", torch.__version__, "| napari_unet", napari_unet.__version__)')"
