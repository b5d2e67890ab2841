#!/usr/bin/env bash
# Set everything up (see setup_env.sh) and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV=${LSEG_VENV:-$(pwd)/.venv}
# Never reach a model hub from tests.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$VENV/bin/python" -m pytest test -q "$@"
