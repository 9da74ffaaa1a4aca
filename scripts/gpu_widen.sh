#!/usr/bin/env bash
# One device lease: widen the bundled model to base width WIDTH (same output, see
# scripts/widen_model.py) and fine-tune two copies side by side for MINUTES each:
#   all: all modalities of the train split;   fluo: its fluorescence images only.
#
#   bash scripts/gpu_widen.sh MINUTES WIDTH
#   (DEVICE=cpu EXTRA="--steps-per-epoch 2 --batch-size 2 --crop-size 64" for a dry run here)
#
# Reads .data/dsb_train (a copy of the DSB2018 `train` split with metadata.csv and
# splits.csv, carried to the device). Writes into $OUT, within what a lease brings back
# (at most 8 files of 16 MiB): one tar per variant holding its best model (by tune loss)
# and the average of its last third of epochs, and one log.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
minutes=$1 width=$2
nvidia-smi -L
python3 scripts/widen_model.py --base-width "$width" --output /tmp/wide || exit 1
for v in all fluo; do
  modality=all; seed=11
  [ "$v" = fluo ] && modality=fluorescence && seed=12
  python3 scripts/train_default.py --data .data/dsb_train --output "/tmp/$v" --time-budget "$minutes" \
    --device "${DEVICE:-cuda}" --init-model /tmp/wide --lr 1e-3 --sampling area --snapshots --threads 4 \
    --modality "$modality" --seed "$seed" ${EXTRA:-} 2>&1 | grep -v Warning > "/tmp/$v.log" &
done
wait
for v in all fluo; do
  run=/tmp/$v
  last=$(ls -d "$run"/snapshots/epoch_* 2>/dev/null | wc -l)
  [ "$last" -lt 1 ] && { echo "$v: no snapshots (the run stopped before its first epoch?)"; continue; }
  first=$(( last - last / 3 ))
  [ "$first" -lt 1 ] && first=1
  python3 scripts/average_snapshots.py --run "$run" --first "$first" --last "$last" --output "/tmp/${v}_avg"
  mkdir -p "/tmp/pack/$v" "/tmp/pack/${v}_avg"
  cp "$run/config.json" "$run/weights.safetensors" "$run/train_log.jsonl" "/tmp/pack/$v/" 2>/dev/null
  cp "/tmp/${v}_avg/config.json" "/tmp/${v}_avg/weights.safetensors" "/tmp/pack/${v}_avg/"
  tar -C /tmp/pack -cf "$OUT/$v.tar" "$v" "${v}_avg"
  { echo "== $v"; cat "/tmp/$v.log"; } >> "$OUT/train.log"
done
python3 scripts/check_device.py /tmp/pack/all ".data/dsb_train/images/$(ls .data/dsb_train/images | head -1)" \
  2>&1 | tee -a "$OUT/train.log"
grep -h "val\|epoch" /tmp/all.log /tmp/fluo.log | tail -n 30
ls -la "$OUT"
