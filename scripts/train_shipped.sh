#!/usr/bin/env bash
# Trains the shipped DAC-tiny and its AR twin side by side on one GPU, from a source pack, for a
# fixed wall-clock budget; this is the command that produced edge_dac/assets/model and models/ar-tiny.
#
#   edge-dac data fetch && edge-dac data pack --out pack        # here: 33 MB of Ogg/Opus
#   MINUTES=7 scripts/train_shipped.sh                           # on the GPU machine (stage 1)
#
# Results: $OUT (or runs/shipped)/{dac,ar}.tar: the run's best/ (EMA weights stored as fp16, half the
# size; load_captioner copies them into fp32 parameters), metrics.jsonl and the log.
set -euo pipefail
PACK=${PACK:-pack}
MINUTES=${MINUTES:-7}
DEST=${OUT:-runs/shipped}
mkdir -p "$DEST"
if [ -d .whl ] && ! python3 -c "import pydantic, loguru, soundfile, soxr" 2>/dev/null; then
    # the GPU image lacks a few deps; they travel as wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export EDGE_DAC_CACHE=$PACK EDGE_DAC_CATALOG=$PACK/catalog.csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
mkdir -p runs
pids=()
for kind in dac ar; do
    python3 -m edge_dac train --config "configs/train-$kind-tiny.yaml" --out "runs/$kind-tiny" \
        --max-minutes "$MINUTES" --no-progress >"runs/$kind-tiny.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for kind in dac ar; do
    run=runs/$kind-tiny
    cp "runs/$kind-tiny.log" "$run/train.log"
    if [ -d "$run/best" ]; then
        python3 -c "
import sys; from safetensors import safe_open; from safetensors.torch import load_file, save_file
path = sys.argv[1] + '/best/model.safetensors'
with safe_open(path, 'pt') as handle: metadata = handle.metadata()
save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}, path, metadata)
" "$run"
    fi
    tar -cf "$DEST/$kind.tar" -C "$run" best metrics.jsonl train.log config.yaml 2>/dev/null || true
    tail -n 5 "$run/train.log"
done
exit $status
