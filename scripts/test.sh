#!/usr/bin/env bash
# The test command: set up (idempotent), then run pytest under a virtual X
# display so that napari gets a real (Mesa) OpenGL context.
#
#   bash scripts/test.sh [pytest args...]
#
# pytest's exit status is this script's exit status (5, "no tests collected",
# counts as a failure like any other non-zero status).
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

if ! command -v xvfb-run >/dev/null 2>&1; then
  echo "[test] ERROR: xvfb-run not found; run scripts/setup.sh as root or install the 'xvfb' package" >&2
  exit 1
fi

# The offscreen platform has no OpenGL; under Xvfb we want xcb.
if [[ "${QT_QPA_PLATFORM:-}" == offscreen ]]; then
  echo "[test] note: QT_QPA_PLATFORM=offscreen has no OpenGL; using xcb under Xvfb" >&2
  export QT_QPA_PLATFORM=xcb
fi
export QT_API="${QT_API:-pyqt6}"

exec xvfb-run -a --server-args="-screen 0 1600x1000x24" \
  "$ROOT/.venv/bin/python" -m pytest "$@"
