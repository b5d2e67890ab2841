#!/usr/bin/env bash
# Set everything up (see setup_env.sh) and run the test suite on the CPU, on both ROS 2
# distributions the project supports: the whole suite on Kilted (.venv), then the tests
# marked `ros` (rclpy, messages, node, lifecycle, launch, colcon) on Jazzy, the LTS
# (.venv-jazzy), then the engine, CLI, training, evaluation and export tests without ROS on
# Python 3.10 with the oldest versions setup.py allows (lane "oldest", .venv-oldest,
# requirements/oldest.txt). Every pass runs even if one fails; the exit code says if any failed.
#
#   bash scripts/test.sh                          all three lanes
#   LSEG_TEST_DISTROS=kilted bash scripts/test.sh one lane (kilted | jazzy | oldest | "kilted jazzy")
#   bash scripts/test.sh test/test_node.py -x     these pytest arguments, on kilted and jazzy (and on
#                                                 oldest too where LSEG_TEST_DISTROS names it)
#   LSEG_TEST_DISTROS=kilted bash scripts/test.sh test -m "not slow"
#                                                 the quick lane: no process, launch, build or training tests
#   LSEG_TEST_DEVICE=cuda bash scripts/test.sh    engine, training and node tests on CUDA, plus the
#                                                 CUDA-only ones (fp16/bf16, pinned staging, CUDA graphs)
set -euo pipefail
cd "$(dirname "$0")/.."
# Never reach a model hub from tests.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# the tests without ROS that the oldest-dependencies lane runs (every backend, CLI, training,
# evaluation, export, weights, data, geometry)
OLDEST_TESTS=(test/test_segmenter.py test/test_dense_clip.py test/test_lseg.py test/test_vilseg.py test/test_lmseg.py
              test/test_vilseg_model.py test/test_prompt_bank.py test/test_profiles.py test/test_cli.py
              test/test_train.py test/test_evaluate.py test/test_export.py test/test_weights.py test/test_config.py
              test/test_acceleration.py test/test_demo_model.py test/test_datasets.py test/test_scenes.py
              test/test_captions.py test/test_metrics.py test/test_label_maps.py test/test_objects.py
              test/test_geometry.py test/test_validation.py test/test_cost_aggregation.py test/test_lmseg_cost.py)
LANES=${LSEG_TEST_DISTROS:-kilted jazzy oldest}
if [ $# -gt 0 ] && [ -z "${LSEG_TEST_DISTROS:-}" ]; then
  LANES="kilted jazzy"  # arguments may name ROS tests, which the oldest lane cannot run
fi
failed=()
for distro in $LANES; do
  case "$distro" in
    kilted) venv=${LSEG_VENV:-$(pwd)/.venv}; tests=(test) ;;
    jazzy) venv=$(pwd)/.venv-jazzy; tests=(test -m ros) ;;  # the tests that touch ROS 2 (marker: test/conftest.py)
    oldest) venv=$(pwd)/.venv-oldest; tests=("${OLDEST_TESTS[@]}") ;;
    *) echo "test.sh: unknown distro '$distro' in LSEG_TEST_DISTROS; accepted: kilted, jazzy, oldest" >&2; exit 2 ;;
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
echo "[test] passed on: $LANES"
