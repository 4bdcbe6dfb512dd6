#!/usr/bin/env bash
# Everything this project still has to measure on a GPU, in one script with a time budget, ending with
# one JSON line. Run from the repository root on a machine with one CUDA GPU, torch and diffusers:
#
#   bash cluster/gpu_ray/gpu_check.sh [--wheels DIR [--target SITE]] [--budget-s 540] [--out DIR] [--cpu]
#
#   0. Ray offline, if it is not importable: unpack_install.sh DIR (the transfer-NN folders pack_wheels.py
#      made); with --target SITE into SITE (for a Python whose site-packages cannot be written)
#   1. the Ray job on the one GPU (run_ray_job.sh: hybrid layout, 1 policy worker on 0.9 GPU, the reward
#      server on 0.1, compile on, SD-Turbo size, 3 epochs): gpu_busy_fraction, mfu_rollout, mfu_update
#   2. with the time left: python -m benchmarks.gpu_throughput --family all --fits (smallest family first,
#      each preset's T, resolution, dtype, LoRA, chunk and micro-batch; 1 trained step per pair, 1 timed
#      round after a warm-up, compile off): pairs/s, MFU and peak memory of one hybrid policy worker per
#      family, and which presets fit 80 GB and 141 GB (a family the budget leaves out is marked skipped)
#   3. one JSON line: {"ray_job": ..., "gpu_throughput": ..., "elapsed_s": ...}; the logs and both JSON
#      files stay in --out (default /tmp/sdpo-gpu-check)
# --cpu: the dry run of the same sequence without a GPU (run_ray_job.sh --cpu, gpu_throughput --cpu-smoke).
set -uo pipefail

WHEELS=""; TARGET=""; BUDGET=540; OUT=/tmp/sdpo-gpu-check; PYTHON=${PYTHON:-python3}; CPU=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --wheels) WHEELS=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --budget-s) BUDGET=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --cpu) CPU=(--cpu); shift ;;
    *) echo "usage: bash cluster/gpu_ray/gpu_check.sh [--wheels DIR [--target SITE]] [--budget-s S] [--out DIR] [--python PY] [--cpu]" >&2; exit 2 ;;
  esac
done
[[ -f learner/main.py ]] || { echo "error: run from the repository root" >&2; exit 2; }
mkdir -p "$OUT"
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [[ -n $TARGET ]]; then
  export PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" PATH="$TARGET/bin:$PATH"
fi
if ! "$PYTHON" -c "import ray" 2>/dev/null; then
  if [[ -z $WHEELS ]]; then
    echo "error: Ray is not installed; pass --wheels DIR (cluster/gpu_ray/README.md)" >&2; exit 1
  fi
  timeout 300 bash cluster/gpu_ray/unpack_install.sh "$WHEELS" --python "$PYTHON" ${TARGET:+--target "$TARGET"} >"$OUT/install.log" 2>&1 \
    || { echo "error: installing Ray failed:" >&2; tail -5 "$OUT/install.log" >&2; exit 1; }
fi

echo "[gpu_check] 1/2 the Ray job (at most 330 s)" >&2
timeout 360 bash cluster/gpu_ray/run_ray_job.sh "${CPU[@]}" --python "$PYTHON" --epochs 3 --timeout-s 330 --work "$OUT/ray_job" \
  >"$OUT/ray_job.json" 2>"$OUT/ray_job.log"
JOB_RC=$?
tail -n 8 "$OUT/ray_job.log" >&2

THROUGHPUT_S=$(( $(left) - 20 ))
echo "[gpu_check] 2/2 gpu_throughput --family all --fits (budget ${THROUGHPUT_S} s)" >&2
if (( THROUGHPUT_S > 60 )); then
  SMOKE=(); [[ ${#CPU[@]} -gt 0 ]] && SMOKE=(--cpu-smoke)
  timeout $((THROUGHPUT_S + 15)) "$PYTHON" -m benchmarks.gpu_throughput "${SMOKE[@]}" --family all --fits --no-compile --train-steps 1 --repeats 1 \
    --budget-s "$THROUGHPUT_S" --out "$OUT/gpu_throughput.json" >/dev/null 2>"$OUT/gpu_throughput.log"
  TP_RC=$?
  grep -E "^\|" "$OUT/gpu_throughput.log" >&2
else
  TP_RC=124
fi

"$PYTHON" - "$OUT" "$JOB_RC" "$TP_RC" "$((SECONDS - START))" <<'PY'
import json, sys
from pathlib import Path

out, job_rc, tp_rc, elapsed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def last_json(path):
    try:
        return json.loads(path.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

job = last_json(out / "ray_job.json") or {"failed": f"exit {job_rc}, see {out / 'ray_job.log'}"}
tp = last_json(out / "gpu_throughput.json") or {"failed": f"exit {tp_rc}, see {out / 'gpu_throughput.log'}"}
print(json.dumps({"ray_job": job, "gpu_throughput": tp, "exit_codes": {"ray_job": job_rc, "gpu_throughput": tp_rc}, "elapsed_s": elapsed}))
PY
