#!/usr/bin/env bash
# Create (or update) a development virtual environment: pinned dependencies, the ROS 2
# message and service interfaces built into the venv, and the package itself installed in
# editable mode. Idempotent; a second run takes seconds.
#
#   bash scripts/setup_env.sh                        ROS 2 Kilted in .venv (the default)
#   LSEG_ROS_DISTRO=jazzy bash scripts/setup_env.sh  ROS 2 Jazzy in .venv-jazzy
#
# LSEG_VENV overrides the directory. Each distro's wheels are requirements/ros-<distro>.txt,
# on top of requirements/base.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DISTRO=${LSEG_ROS_DISTRO:-kilted}
case "$DISTRO" in
  kilted) default_venv="$ROOT/.venv" ;;
  jazzy) default_venv="$ROOT/.venv-jazzy" ;;
  *) echo "setup_env: LSEG_ROS_DISTRO=$DISTRO; accepted: kilted, jazzy" >&2; exit 2 ;;
esac
VENV=${LSEG_VENV:-$default_venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV (ROS 2 $DISTRO)"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.lseg_requirements.sha"
want=$(cat requirements/base.txt "requirements/ros-$DISTRO.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing requirements/base.txt and requirements/ros-$DISTRO.txt (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements/base.txt -r "requirements/ros-$DISTRO.txt"
  echo "$want" > "$stamp"
fi
echo "[setup] building ROS 2 interfaces (msg/, srv/) into the venv"
bash scripts/build_interfaces.sh "$VENV"
if ! "$VENV/bin/python" -m pip show -q lseg_ros >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
fi
"$VENV/bin/python" -c "import lseg_ros, lseg_ros.msg, lseg_ros.srv, rclpy, open_clip, timm; print('[setup] environment ready (ROS 2 $DISTRO):', lseg_ros.__file__)"
