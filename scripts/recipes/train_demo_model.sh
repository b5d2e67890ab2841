#!/usr/bin/env bash
# Reproduce the shipped demo model lseg_ros/weights/scenes_lseg_tiny.{safetensors,yaml}:
# generate labelled scenes, train a randomly initialized lseg_tiny on them with lseg-train
# (CPU, about 10 minutes on 2 cores), copy the last checkpoint into lseg_ros/weights/ and
# score it on freshly generated held-out scenes with lseg-eval.
#
#   bash scripts/recipes/train_demo_model.sh            # WORK=/tmp/lseg_demo_model EPOCHS=40
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${LSEG_VENV:-$(pwd)/.venv}
PYTHON=${PYTHON:-$VENV/bin/python}
WORK=${WORK:-/tmp/lseg_demo_model}
COUNT=${COUNT:-1200}
EPOCHS=${EPOCHS:-40}
WEIGHTS=lseg_ros/weights

rm -rf "$WORK/scenes" "$WORK/heldout" "$WORK/run" "$WORK/eval"
mkdir -p "$WORK" "$WEIGHTS"
"$PYTHON" -m lseg_ros.data.scenes "$WORK/scenes" --count "$COUNT" --seed 0 --size 128x160 --val-fraction 0.1

start=$(date +%s)
"$PYTHON" -m lseg_ros.train --data_root "$WORK/scenes" --out "$WORK/run" --device cpu --seed 0 \
  --epochs "$EPOCHS" --batch_size 8 --crop_size 128 --scale_range 0.75,1.5 --jitter 0.2 \
  --optimizer adamw --backbone_lr 1e-3 --decoder_lr 3e-3 --weight_decay 1e-4 --threads 1 --workers 1 \
  --model.backend lseg --model.model lseg_tiny --model.pretrained random \
  --model.prompt_templates none --model.short_side 128 --model.max_long_side 160
echo "[demo model] training took $(( $(date +%s) - start )) s"

# model.yaml is renamed into place after an epoch's weights and state: it names the last
# complete epoch (an epoch_NNN.safetensors alone may be from a run killed mid-save)
last=$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["pretrained"])' "$WORK/run/model.yaml")
install -m 644 "$last" "$WEIGHTS/scenes_lseg_tiny.safetensors"
"$PYTHON" - "$WORK/run/model.yaml" "$WEIGHTS/scenes_lseg_tiny.yaml" <<'EOF'
import sys

import yaml

config = yaml.safe_load(open(sys.argv[1]))
config.update(pretrained="scenes_lseg_tiny.safetensors", device="auto", precision="fp32")
header = ("# The shipped demo model (see README.md here): lseg_tiny trained on generated scenes by\n"
          "# scripts/recipes/train_demo_model.sh. demo_model_config() fills in the weights' full path.\n")
open(sys.argv[2], "w").write(header + yaml.safe_dump(config, sort_keys=False))
EOF

# Held-out check: 50 new scenes from another seed, through the engine's own inference path.
"$PYTHON" -m lseg_ros.data.scenes "$WORK/heldout" --count 50 --seed 1 --size 128x160 --val-fraction 0
"$PYTHON" -m lseg_ros.evaluate --dataset generic --root "$WORK/heldout" --split all --out "$WORK/eval" \
  --config "$WEIGHTS/scenes_lseg_tiny.yaml" --pretrained "$WEIGHTS/scenes_lseg_tiny.safetensors"
echo "[demo model] weights in $WEIGHTS; held-out report in $WORK/eval/report.md"
