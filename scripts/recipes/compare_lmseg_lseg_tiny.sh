#!/usr/bin/env bash
# lmseg_tiny vs lseg_tiny trained from random initialization on the same generated scenes,
# under the same wall-clock budget (both runs concurrently, 1 torch thread each, no loader
# workers), then each scored on 50 freshly generated held-out scenes (seed 1) with lseg-eval.
# The figures of docs/training.md's "LMSeg training" (benchmarks/README.md, Training) come from these commands.
#
#   bash scripts/recipes/compare_lmseg_lseg_tiny.sh     # WORK=/tmp/lmseg_proof LSEG_EPOCHS=22 LMSEG_EPOCHS=30
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${LSEG_VENV:-$(pwd)/.venv}
PYTHON=${PYTHON:-$VENV/bin/python}
WORK=${WORK:-/tmp/lmseg_proof}
LSEG_EPOCHS=${LSEG_EPOCHS:-22}
LMSEG_EPOCHS=${LMSEG_EPOCHS:-30}

rm -rf "$WORK/scenes" "$WORK/heldout" "$WORK/lseg_tiny" "$WORK/lmseg_tiny" "$WORK"/eval_*
mkdir -p "$WORK"
"$PYTHON" -m lseg_ros.data.scenes "$WORK/scenes" --count 1200 --seed 0 --size 128x160 --val-fraction 0.1
"$PYTHON" -m lseg_ros.data.scenes "$WORK/heldout" --count 50 --seed 1 --size 128x160 --val-fraction 0

train() {  # NAME EPOCHS model-options...
  local name=$1 epochs=$2 start
  shift 2
  start=$(date +%s.%N)
  "$PYTHON" -m lseg_ros.train --data_root "$WORK/scenes" --out "$WORK/$name" \
    --device cpu --seed 0 --epochs "$epochs" --batch_size 8 --crop_size 128 --scale_range 0.75,1.5 --jitter 0.2 \
    --optimizer adamw --backbone_lr 1e-3 --decoder_lr 3e-3 --weight_decay 1e-4 --threads 1 --workers 0 \
    --model.pretrained random --model.prompt_templates none --model.short_side 128 --model.max_long_side 160 \
    --progress false "$@" > "$WORK/$name.log" 2>&1
  echo "$name: $(echo "$(date +%s.%N) - $start" | bc) s" >> "$WORK/times.txt"
}

: > "$WORK/times.txt"
train lseg_tiny "$LSEG_EPOCHS" --model.backend lseg --model.model lseg_tiny &
train lmseg_tiny "$LMSEG_EPOCHS" --model.backend lmseg --model.model lmseg_tiny \
  --model.lmseg.freeze_clip false --model.lmseg.freeze_sam false &
wait
cat "$WORK/times.txt"

for name in lseg_tiny lmseg_tiny; do
  "$PYTHON" -m lseg_ros.evaluate --dataset generic --root "$WORK/heldout" --split all --out "$WORK/eval_$name" \
    --config "$WORK/$name/model.yaml" --device cpu --num_threads 1
done
grep -H '"miou"' "$WORK"/eval_*/metrics.json
