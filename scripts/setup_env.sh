#!/usr/bin/env bash
# Create (or update) a development virtual environment: pinned dependencies, the ROS 2
# message and service interfaces built into the venv, and the package itself installed in
# editable mode. Idempotent; a second run takes seconds.
#
#   bash scripts/setup_env.sh                        ROS 2 Kilted in .venv (the default)
#   LSEG_ROS_DISTRO=jazzy bash scripts/setup_env.sh  ROS 2 Jazzy in .venv-jazzy
#   LSEG_ROS_DISTRO=oldest bash scripts/setup_env.sh no ROS: Python 3.10 with the oldest versions
#                                                    setup.py allows (requirements/oldest.txt) in .venv-oldest
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
  oldest) default_venv="$ROOT/.venv-oldest" ;;
  *) echo "setup_env: LSEG_ROS_DISTRO=$DISTRO; accepted: kilted, jazzy, oldest" >&2; exit 2 ;;
esac
VENV=${LSEG_VENV:-$default_venv}

# The oldest lane's Python 3.10: on PATH (a pyenv shim counts only if it runs), else pyenv's.
find_python310() {
  local candidate
  for candidate in "$(command -v python3.10 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 \
                   "$HOME"/.pyenv/versions/3.10*/bin/python3.10; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "setup_env: no working Python 3.10 for LSEG_ROS_DISTRO=oldest; looked for python3.10 on PATH, ${PYENV_ROOT:-$HOME/.pyenv}/versions/3.10*/bin/python3.10 and ~/.pyenv/versions/3.10*/bin/python3.10 (or set PYTHON=/path/to/python3.10)" >&2
  return 1
}
if [ "$DISTRO" = oldest ]; then
  PYTHON=${PYTHON:-$(find_python310)} || exit 2
  requirements=(requirements/oldest.txt)
else
  PYTHON=${PYTHON:-python3}
  requirements=(requirements/base.txt "requirements/ros-$DISTRO.txt")
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV (ROS 2 $DISTRO)"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.lseg_requirements.sha"
want=$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing ${requirements[*]} (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${requirements[@]/#/-r}"
  echo "$want" > "$stamp"
fi
if [ "$DISTRO" != oldest ]; then
  echo "[setup] building ROS 2 interfaces (msg/, srv/) into the venv"
  bash scripts/build_interfaces.sh "$VENV"
fi
if ! "$VENV/bin/python" -m pip show -q lseg_ros >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
fi
if [ "$DISTRO" = oldest ]; then
  "$VENV/bin/python" -c "import sys, lseg_ros, open_clip, timm, torch, onnxruntime; print('[setup] environment ready (no ROS; Python %d.%d, torch %s):' % (sys.version_info[:2] + (torch.__version__,)), lseg_ros.__file__)"
else
  "$VENV/bin/python" -c "import lseg_ros, lseg_ros.msg, lseg_ros.srv, rclpy, open_clip, timm; print('[setup] environment ready (ROS 2 $DISTRO):', lseg_ros.__file__)"
fi
