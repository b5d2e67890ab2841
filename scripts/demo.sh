#!/usr/bin/env bash
# Set everything up (see setup_env.sh) and run the main job offline: a simulated camera
# streams generated scenes into lseg_node (its own process; the small LSeg model shipped with the package),
# a recorder writes the overlays to lseg_demo_out/ and per-frame latency is printed.
# Extra arguments go to the demo, e.g. --frames 100 --rate 10 --out /tmp/overlays.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV=${LSEG_VENV:-$(pwd)/.venv}
export HF_HUB_OFFLINE=1
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
exec "$VENV/bin/python" -m lseg_ros.ros.demo "$@"
