#!/usr/bin/env bash
# One device session: time a few steps, train the default model to fit the budget
# ($1 seconds of training), then check the CUDA path. Writes into $OUT.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
budget=${1:-360}
nvidia-smi -L
python3 scripts/train_default.py --data .data/dsb_train --output /tmp/probe --probe 40 --batch-size 16 2>&1 | grep -v Warning | tee $OUT/probe.log
rate=$(grep PROBE_SECONDS_PER_STEP $OUT/probe.log | awk '{print $2}')
epochs=$(python3 -c "print(max(8, min(100, int($budget / ($rate * 200)))))")
echo "rate $rate s/step -> epochs $epochs" | tee -a $OUT/probe.log
python3 scripts/train_default.py --data .data/dsb_train --output $OUT/nuclei --epochs $epochs \
  --steps-per-epoch 200 --batch-size 16 2>&1 | tee $OUT/train.log | grep -E "val loss|eta" | tail -n 40
rm -f $OUT/nuclei/train_state.pt.tmp
python3 scripts/check_device.py $OUT/nuclei .data/dsb_train/images/$(ls .data/dsb_train/images | head -1) 2>&1 | tee $OUT/device_check.log
echo "epochs=$epochs" > $OUT/nuclei/epochs.txt
