#!/usr/bin/env bash
# lmseg_tiny (both heads) vs lseg_tiny trained from random initialization on the same generated
# scenes, each within about 20 minutes on 1 torch thread (no loader workers), then each scored
# on 50 freshly generated held-out scenes (seed 1) with lseg-eval.
# The figures of docs/training.md's "LMSeg training" (benchmarks/README.md, Training) come from these commands:
# lseg_tiny and lmseg_tiny (head cosine) side by side on 2026-12-04, lmseg_tiny_agg (head
# aggregation) on 2026-12-05 next to a benchmark on the other core.
#
#   bash scripts/recipes/compare_lmseg_lseg_tiny.sh     # WORK=/tmp/lmseg_proof LSEG_EPOCHS=22 LMSEG_EPOCHS=30 AGG_EPOCHS=28
#   RUNS="lmseg_tiny_agg" bash scripts/recipes/compare_lmseg_lseg_tiny.sh   # one of them
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${LSEG_VENV:-$(pwd)/.venv}
PYTHON=${PYTHON:-$VENV/bin/python}
WORK=${WORK:-/tmp/lmseg_proof}
LSEG_EPOCHS=${LSEG_EPOCHS:-22}
LMSEG_EPOCHS=${LMSEG_EPOCHS:-30}
AGG_EPOCHS=${AGG_EPOCHS:-28}
RUNS=${RUNS:-lseg_tiny lmseg_tiny lmseg_tiny_agg}

mkdir -p "$WORK"
for name in $RUNS; do rm -rf "${WORK:?}/$name" "$WORK/eval_$name"; done
[ -d "$WORK/scenes" ] || "$PYTHON" -m lseg_ros.data.scenes "$WORK/scenes" --count 1200 --seed 0 --size 128x160 --val-fraction 0.1
[ -d "$WORK/heldout" ] || "$PYTHON" -m lseg_ros.data.scenes "$WORK/heldout" --count 50 --seed 1 --size 128x160 --val-fraction 0

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
for name in $RUNS; do
  case $name in
    lseg_tiny) train lseg_tiny "$LSEG_EPOCHS" --model.backend lseg --model.model lseg_tiny & ;;
    lmseg_tiny) train lmseg_tiny "$LMSEG_EPOCHS" --model.backend lmseg --model.model lmseg_tiny \
      --model.lmseg.head cosine --model.lmseg.freeze_clip false --model.lmseg.freeze_sam false & ;;
    lmseg_tiny_agg) train lmseg_tiny_agg "$AGG_EPOCHS" --model.backend lmseg --model.model lmseg_tiny \
      --model.lmseg.head aggregation --model.lmseg.freeze_clip false --model.lmseg.freeze_sam false & ;;
    *) echo "unknown run $name (lseg_tiny, lmseg_tiny, lmseg_tiny_agg)" >&2; exit 2 ;;
  esac
done
wait
cat "$WORK/times.txt"

for name in $RUNS; do
  "$PYTHON" -m lseg_ros.evaluate --dataset generic --root "$WORK/heldout" --split all --out "$WORK/eval_$name" \
    --config "$WORK/$name/model.yaml" --device cpu --num_threads 1
done
grep -H '"miou"' "$WORK"/eval_*/metrics.json
