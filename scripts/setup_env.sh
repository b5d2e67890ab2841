#!/usr/bin/env bash
# Create (or update) the development virtual environment in .venv:
# pinned dependencies, the ROS 2 message interfaces built into the venv, and the package
# itself installed in editable mode. Idempotent; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${LSEG_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.lseg_requirements.sha"
want=$(sha256sum requirements/dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing requirements/dev.txt (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements/dev.txt
  echo "$want" > "$stamp"
fi
echo "[setup] building ROS 2 interfaces (msg/) into the venv"
bash scripts/build_interfaces.sh "$VENV"
if ! "$VENV/bin/python" -m pip show -q lseg_ros >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
fi
"$VENV/bin/python" -c "import lseg_ros, lseg_ros.msg, rclpy, open_clip, timm; print('[setup] environment ready:', lseg_ros.__file__)"
