#!/bin/bash
# Fine-tune the default model on a lent GPU machine for a fixed wall time; run from the repo root
# there, with the packed subset (.gpudata, from examples/device/subset.py) and wheels of what the
# machine lacks (.whl: soundfile, soxr, librosa, audioread, lazy_loader, decorator, pooch,
# platformdirs, cffi, pycparser) carried along. docs/training.md has the whole recipe.
#
#   bash examples/device/train.sh joint 530   # every domain, from models/default (train --init)
#   bash examples/device/train.sh piano 150   # the piano decoder alone (add-domain --refine)
#
# `timeout` ends the run; what it keeps is the last checkpoint (every 200-250 steps, so at most
# ~30 s of work is lost). Results go to $OUT: split under the tool's 16 MiB per file.
set -eo pipefail
MODE=${1:?joint or piano}
TRAIN_SECONDS=${2:?wall seconds to train}
export PYTHONUNBUFFERED=1
if ! python3 -c "import librosa, soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
DATA=/tmp/train-subset-opus32
python3 examples/device/subset.py --workers 16 unpack .gpudata $DATA
# DEVICE=cpu BATCH=2 EVERY=2 try the script here first, for the price of a few steps
GPU=(--batch-size "${BATCH:-32}" --segment 1.0 --lr 3e-4 --bf16 --device "${DEVICE:-cuda}" --loader-workers 15 -q)
set +e
if [ "$MODE" = joint ]; then
  timeout -k 20 "$TRAIN_SECONDS" python3 -m musictranslate train $DATA -o /tmp/run/default --init models/default \
    --preset small --steps 100000 --checkpoint-every "${EVERY:-250}" "${GPU[@]}"
else
  timeout -k 15 "$TRAIN_SECONDS" python3 -m musictranslate add-domain $DATA/piano --name piano --refine \
    -m models/default --steps 100000 --checkpoint-every "${EVERY:-200}" "${GPU[@]}"
fi
echo "training stopped: exit $? (124: the time ran out, as planned)"
set -e
if [ "$MODE" = joint ]; then
  # the checkpoint holds the weights too; examples/device/rebuild.py makes the model folder from it
  split -b 15M /tmp/run/default.train/checkpoint/state.safetensors "$OUT/state.safetensors.part-"
  tar -cf "$OUT/meta.tar" -C /tmp/run default/manifest.json default.train/log.jsonl \
    default.train/split.json default.train/checkpoint/state.json
else
  cp models/default/decoders/piano.safetensors models/default/manifest.json models/default.train/refine-piano.jsonl "$OUT/"
fi
ls -la "$OUT"
