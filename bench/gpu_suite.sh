#!/usr/bin/env bash
# The GPU measurements issues 5-7 still wait for, for a session that has a CUDA device.
#
#   bash bench/gpu_suite.sh [tests|kernels|rollout|train_step|all]   (default: all)
#
# Each step's output goes to $OUT (the device tool's folder that comes back) or, without
# it, bench/gpu_results/<UTC time>/, beside the device's name; the figures then go into
# bench/RESULTS.md with that name. One step fits the device tool's 10-minute call limit:
# run them one per call when time is short.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-all}
case $step in
    tests | kernels | rollout | train_step | all) ;;
    *)
        echo "unknown step '$step' (tests, kernels, rollout, train_step or all)" >&2
        exit 2
        ;;
esac
out=${OUT:-bench/gpu_results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to torch: these are GPU measurements" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/device.csv"
cat "$out/device.csv"

run() {  # run NAME COMMAND...: tee the output, keep going to the next step on failure
    local name=$1
    shift
    echo "== $name: $*"
    if ! "$@" 2>&1 | tee "$out/$name.txt"; then
        echo "== $name FAILED (see $out/$name.txt)" >&2
    fi
}

case $step in
    tests | all) run pytest_gpu python -m pytest -q -m gpu tests/triton_kernels ;;&
    kernels | all) run kernels python bench/kernels.py ;;&
    rollout | all) run rollout python bench/rollout.py --gpu ;;&
    train_step | all) run train_step python bench/train_step.py --gpu ;;
    *) ;;
esac
echo "outputs in $out"
