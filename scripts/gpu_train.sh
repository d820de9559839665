#!/usr/bin/env bash
# Train the reference networks on one GPU within a fixed wall-clock budget (see scripts/gpu_train.py).
# Run from the repository root:
#   bash scripts/gpu_train.sh OUTDIR [extra gpu_train.py options]
# On a GPU machine without TensorFlow, pixell or internet access, copy the wheels listed in scripts/gpu_wheels.txt
# into .whl/ beside the repository first: they are installed into /tmp/site.
set -euo pipefail
out=${1:?usage: gpu_train.sh OUTDIR [options]}
shift
mkdir -p "$out"
if ! python3 -c 'import keras, pixell, symlens' 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
export PYTHONUNBUFFERED=1
python3 scripts/gpu_train.py --out "$out" "$@" 2>&1 | tee "$out/gpu_run.log"
