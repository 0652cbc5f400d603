#!/bin/bash
# GPU check in under 5 minutes on one CUDA GPU: the GPU-marked tests, a few hundred steps of the main job with
# mixed precision (bf16 where the GPU supports it, else fp16), and the inference benchmark on the GPU.
#   scripts/gpu_check.sh                 # from the repository root, with medlight installed (or PYTHONPATH=.)
#   PYTHON=/path/to/python STEPS=300 scripts/gpu_check.sh
# Writes runs/gpu_check/ (the run folder) and prints one PASS/FAIL line per part; exits non-zero on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
STEPS=${STEPS:-300}
OUT=${OUT:-runs/gpu_check}
status=0
part() {  # part NAME SECONDS COMMAND...: run one part with a time limit, report it
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  if timeout "$limit" "$@"; then
    echo "PASS $name ($((SECONDS - start)) s)"
  else
    echo "FAIL $name (exit $?, $((SECONDS - start)) s)"
    status=1
  fi
}

"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0), "torch", torch.__version__, "CUDA", torch.version.cuda)' || exit 1
precision=$("$PYTHON" -c 'import torch; print("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")')
config=configs/trainer/gpu.yaml
[[ $precision == bf16-mixed ]] && config=configs/trainer/gpu_bf16.yaml

part "gpu tests" 120 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests

rm -rf "$OUT"
part "main job, $STEPS steps, $precision" 150 "$PYTHON" -m medlight fit \
  --config configs/data/hippocampus_3d.yaml --config configs/model/res_unet_3d.yaml --config "$config" \
  --config configs/callbacks/timing.yaml \
  --trainer.max_steps "$STEPS" --trainer.max_epochs -1 --trainer.check_val_every_n_epoch null \
  --trainer.val_check_interval "$STEPS" --trainer.limit_val_batches 4 --trainer.limit_test_batches 4 \
  --trainer.enable_progress_bar false --trainer.log_every_n_steps 50 --data.init_args.num_workers 4 \
  --tracking.wandb disabled --trainer.default_root_dir "$OUT"
[[ -f $OUT/metrics/test_summary.json ]] && "$PYTHON" -c "import json,sys; s=json.load(open(sys.argv[1])); print({k: s[k] for k in ('dice', 'cases', 'train_seconds_per_step', 'inference_seconds_per_case') if k in s})" "$OUT/metrics/test_summary.json"

part "inference benchmark" 60 "$PYTHON" experiments/perf/inference.py --device cuda --repeats 3

exit $status
