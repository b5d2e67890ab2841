#!/usr/bin/env bash
# Build lseg_ros's messages and services (msg/, srv/) and install them into a Python virtual environment
# that holds the ROS 2 wheels (requirements/dev.txt), for development and CI.
#
#   scripts/build_interfaces.sh [VENV]     VENV defaults to $VIRTUAL_ENV, then ./.venv
#   scripts/build_interfaces.sh --clean [VENV]   start from an empty build directory
#
# Only the generated interfaces are installed (LSEG_ROS_INSTALL_PYTHON_SOURCES=OFF): the
# hand-written package is used in place from the source tree (repository root on sys.path,
# or `pip install -e .`), and `import lseg_ros.msg` finds the generated part in the venv
# through pkgutil.extend_path in lseg_ros/__init__.py.
#
# Re-running is cheap: the build directory (build/interfaces-<venv>, git-ignored) is kept, and
# CMake rebuilds only what changed. A ROS user builds the package with colcon instead.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

clean=0
if [[ "${1:-}" == "--clean" ]]; then
  clean=1
  shift
fi
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
  echo "usage: $0 [--clean] [VENV]" >&2
  exit 2
fi

venv="${1:-${VIRTUAL_ENV:-$repo_root/.venv}}"
venv="$(cd "$venv" 2>/dev/null && pwd)" || {
  echo "build_interfaces: virtual environment '${1:-${VIRTUAL_ENV:-$repo_root/.venv}}' does not exist" >&2
  exit 1
}
python="$venv/bin/python"
if [[ ! -x "$python" ]]; then
  echo "build_interfaces: no Python at '$python'" >&2
  exit 1
fi
if [[ ! -d "$venv/share/rosidl_default_generators" ]]; then
  echo "build_interfaces: '$venv' has no rosidl toolchain; install requirements/dev.txt into it" >&2
  exit 1
fi

# one build directory per venv: the Kilted and Jazzy environments do not rebuild each other's
build_dir="$repo_root/build/interfaces-$(basename "$venv")"
cache="$build_dir/CMakeCache.txt"

# A build directory configured for another venv (or by hand) is started afresh.
if [[ -f "$cache" ]] && ! grep -qx "CMAKE_INSTALL_PREFIX:PATH=$venv" "$cache"; then
  clean=1
fi
# A configure that failed half-way (cache written, no build files) is started afresh too.
if [[ -f "$cache" && ! -f "$build_dir/build.ninja" && ! -f "$build_dir/Makefile" ]]; then
  clean=1
fi
if [[ $clean -eq 1 ]]; then
  rm -rf "$build_dir"
fi

# The wheels' CMake packages are found only through these (see
# shared notes: ros2-toolchain.md); PATH makes their generator scripts use this venv.
export AMENT_PREFIX_PATH="$venv"
export CMAKE_PREFIX_PATH="$venv"
export PATH="$venv/bin:$PATH"

if [[ ! -f "$cache" ]]; then
  generator=()
  if command -v ninja >/dev/null 2>&1; then
    generator=(-G Ninja)
  fi
  cmake -S "$repo_root" -B "$build_dir" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$python" \
    -DLSEG_ROS_INSTALL_PYTHON_SOURCES=OFF \
    -DBUILD_TESTING=OFF
fi

cmake --build "$build_dir" --parallel "$(nproc 2>/dev/null || echo 2)"
cmake --install "$build_dir" > "$build_dir/install.log"

# Check the result the way the code uses it: from the source tree.
(cd "$repo_root" && "$python" -c \
  "from lseg_ros.msg import LabelSpec, LabelQuery, SegmentationInfo, ConfidenceMaps; from lseg_ros.srv import SetLabels") || {
  echo "build_interfaces: built and installed, but importing lseg_ros.msg / lseg_ros.srv fails" >&2
  exit 1
}
echo "build_interfaces: lseg_ros.msg and lseg_ros.srv installed into $venv"
