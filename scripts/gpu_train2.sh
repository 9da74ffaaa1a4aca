#!/usr/bin/env bash
# Second stage on a device: continue the stage-1 model with a fresh schedule for $1 seconds.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
budget=${1:-300}
rate=${2:-0.0372}
epochs=$(python3 -c "print(max(4, int($budget / ($rate * 200))))")
echo "epochs $epochs"
python3 scripts/train_default.py --data .data/dsb_train --output $OUT/nuclei2 --epochs $epochs \
  --steps-per-epoch 200 --batch-size 16 --lr 1e-3 --seed 1 --init-model .data/nuclei_gpu1 2>&1 \
  | tee $OUT/train2.log | grep -E "val loss" | tail -n 50
echo "epochs=$epochs" > $OUT/nuclei2/epochs.txt
