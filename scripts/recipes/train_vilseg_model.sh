#!/usr/bin/env bash
# Reproduce the shipped ViL-Seg model lseg_ros/weights/scenes_vilseg_tiny.{safetensors,yaml}:
# generate captioned scenes (images and captions only, never a mask), train a randomly
# initialized vilseg_tiny on them with `lseg-train --objective vilseg` (CPU, 1 thread, at
# most 20 minutes), copy the last checkpoint into lseg_ros/weights/ and score it on freshly
# generated held-out scenes' masks with lseg-eval.
#
#   bash scripts/recipes/train_vilseg_model.sh          # WORK=/tmp/lseg_vilseg_model STEPS=400
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${LSEG_VENV:-$(pwd)/.venv}
PYTHON=${PYTHON:-$VENV/bin/python}
WORK=${WORK:-/tmp/lseg_vilseg_model}
COUNT=${COUNT:-2000}
STEPS=${STEPS:-400}
THREADS=${THREADS:-1}
WEIGHTS=lseg_ros/weights

rm -rf "$WORK/captions" "$WORK/val" "$WORK/heldout" "$WORK/run" "$WORK/eval"
mkdir -p "$WORK" "$WEIGHTS"
"$PYTHON" -m lseg_ros.data.scenes "$WORK/captions" --count "$COUNT" --seed 0 --size 128x160 --captions 3
# a small labelled set (another seed) only to watch validation mIoU during training
"$PYTHON" -m lseg_ros.data.scenes "$WORK/val" --count 40 --seed 2 --size 128x160 --val-fraction 0.5

start=$(date +%s)
"$PYTHON" -m lseg_ros.train --objective vilseg --data_root "$WORK/captions" --val_data_root "$WORK/val" \
  --out "$WORK/run" --device cpu --seed 0 --max_steps "$STEPS" --batch_size 32 --jitter 0.3 \
  --optimizer adamw --backbone_lr 1e-3 --decoder_lr 1e-3 --text_lr 1e-3 --weight_decay 1e-4 --lr_power 0.9 \
  --threads "$THREADS" --workers 0 --progress false \
  --vilseg.cross_modal_weight 1 --vilseg.vision_weight 1 --vilseg.cluster_weight 1 --vilseg.cluster_entropy 1 \
  --vilseg.image_size 128,160 --vilseg.pooling clusters \
  --model.backend vilseg --model.model vilseg_tiny --model.pretrained random --model.vilseg.clusters 16 \
  --model.prompt_templates single --model.short_side 128 --model.max_long_side 160
echo "[vilseg model] training took $(( $(date +%s) - start )) s"

last=$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["pretrained"])' "$WORK/run/model.yaml")
install -m 644 "$last" "$WEIGHTS/scenes_vilseg_tiny.safetensors"
"$PYTHON" - "$WORK/run/model.yaml" "$WEIGHTS/scenes_vilseg_tiny.yaml" <<'PY'
import sys

import yaml

config = yaml.safe_load(open(sys.argv[1]))
config.update(pretrained="scenes_vilseg_tiny.safetensors", device="auto", precision="fp32")
header = ("# The shipped ViL-Seg model (see README.md here): vilseg_tiny trained on captioned scenes,\n"
          "# no masks, by scripts/recipes/train_vilseg_model.sh.\n")
open(sys.argv[2], "w").write(header + yaml.safe_dump(config, sort_keys=False))
PY

# Held-out check: 50 new labelled scenes (seed 1), through the engine's own inference path.
"$PYTHON" -m lseg_ros.data.scenes "$WORK/heldout" --count 50 --seed 1 --size 128x160 --val-fraction 0
"$PYTHON" -m lseg_ros.evaluate --dataset generic --root "$WORK/heldout" --split all --out "$WORK/eval" \
  --config "$WEIGHTS/scenes_vilseg_tiny.yaml" --pretrained "$WEIGHTS/scenes_vilseg_tiny.safetensors"
echo "[vilseg model] weights in $WEIGHTS; held-out report in $WORK/eval/report.md"
