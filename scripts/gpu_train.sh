#!/usr/bin/env bash
# One device lease: train a default-model candidate for MINUTES, then check the CUDA path.
#
#   bash scripts/gpu_train.sh MINUTES NAME [train_default.py options ...]
#   e.g. bash scripts/gpu_train.sh 9 w12 --sampling area --snapshots
#   (base width 12, the bundled model's: width 16 runs 1.6x slower on a CPU, past the
#   1.5 s goal for a 1024x1024 image on 2 cores)
#
# Reads .data/dsb_train (a copy of the DSB2018 `train` split with metadata.csv and
# splits.csv, carried to the device). Writes into $OUT, within what a lease brings back
# (at most 8 files of 16 MiB, two folders down):
#   NAME/            the run's best model (config.json, weights.safetensors) and its
#                    resumable state, split into train_state.part.* of 15 MiB
#   NAME_avg/        with --snapshots: the weights of the last third of the epochs averaged
#   NAME.log, device_check.log
# A run brought back by an earlier lease and carried as .data/NAME resumes where it stopped.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
minutes=$1 name=$2
shift 2
run=/tmp/$name
nvidia-smi -L
if [ -d ".data/$name" ]; then
  cp -r ".data/$name" "$run"
  if ls "$run"/train_state.part.* >/dev/null 2>&1; then
    cat "$run"/train_state.part.* > "$run/train_state.pt" && rm "$run"/train_state.part.*
  fi
fi
python3 scripts/train_default.py --data .data/dsb_train --output "$run" --time-budget "$minutes" \
  --device cuda "$@" 2>&1 | grep -v Warning > "$OUT/$name.log"
tail -n 25 "$OUT/$name.log"
mkdir -p "$OUT/$name"
cp "$run/config.json" "$run/weights.safetensors" "$OUT/$name/"
[ -f "$run/train_state.pt" ] && split -b 15m "$run/train_state.pt" "$OUT/$name/train_state.part."
if [ -d "$run/snapshots" ]; then
  last=$(ls -d "$run"/snapshots/epoch_* | wc -l)
  first=$(( last - last / 3 ))
  [ "$first" -lt 1 ] && first=1
  python3 scripts/average_snapshots.py --run "$run" --first "$first" --last "$last" --output "$OUT/${name}_avg"
fi
python3 scripts/check_device.py "$OUT/$name" ".data/dsb_train/images/$(ls .data/dsb_train/images | head -1)" \
  2>&1 | tee "$OUT/device_check.log"
ls -la "$OUT" "$OUT/$name"
