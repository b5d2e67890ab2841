#!/usr/bin/env bash
# Set everything up (see setup_env.sh) and run the test suite on the CPU, on both ROS 2
# distributions the project supports: the whole suite on Kilted (.venv), then the tests
# marked `ros` (rclpy, messages, node, lifecycle, launch, colcon) on Jazzy, the LTS
# (.venv-jazzy). Both passes run even if the first fails; the exit code says if any failed.
#
#   bash scripts/test.sh                          both distros
#   LSEG_TEST_DISTROS=kilted bash scripts/test.sh one distro (kilted | jazzy | "kilted jazzy")
#   bash scripts/test.sh test/test_node.py -x     these pytest arguments, on each distro
#   LSEG_TEST_DISTROS=kilted bash scripts/test.sh test -m "not slow"
#                                                 the quick lane: no process, launch, build or training tests
#   LSEG_TEST_DEVICE=cuda bash scripts/test.sh    engine, training and node tests on CUDA, plus the
#                                                 CUDA-only ones (fp16/bf16, pinned staging, CUDA graphs)
set -euo pipefail
cd "$(dirname "$0")/.."
# Never reach a model hub from tests.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
failed=()
for distro in ${LSEG_TEST_DISTROS:-kilted jazzy}; do
  case "$distro" in
    kilted) venv=${LSEG_VENV:-$(pwd)/.venv}; tests=(test) ;;
    jazzy) venv=$(pwd)/.venv-jazzy; tests=(test -m ros) ;;  # the tests that touch ROS 2 (marker: test/conftest.py)
    *) echo "test.sh: unknown distro '$distro' in LSEG_TEST_DISTROS; accepted: kilted, jazzy" >&2; exit 2 ;;
  esac
  LSEG_ROS_DISTRO=$distro LSEG_VENV=$venv bash scripts/setup_env.sh
  if [ $# -gt 0 ]; then
    tests=("$@")
  fi
  echo "[test] ROS 2 $distro on ${LSEG_TEST_DEVICE:-cpu}: pytest ${tests[*]}"
  start=$(date +%s)
  "$venv/bin/python" -m pytest -q "${tests[@]}" || failed+=("$distro")
  echo "[test] ROS 2 $distro: $(( $(date +%s) - start )) s"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "[test] FAILED on: ${failed[*]}" >&2
  exit 1
fi
echo "[test] passed on: ${LSEG_TEST_DISTROS:-kilted jazzy}"
