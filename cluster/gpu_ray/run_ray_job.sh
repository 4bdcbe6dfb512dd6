#!/usr/bin/env bash
# The Ray job on one GPU, as a cluster runs it, from nothing but this repository and a Python with torch,
# diffusers and Ray (install Ray offline first: unpack_install.sh). Run from the repository root:
#
#   bash cluster/gpu_ray/run_ray_job.sh [--cpu] [--python PYTHON] [--epochs 3] [--steps T] [--work DIR] [--timeout-s 900]
#
#   1. ray start --head (its own ports and temp dir; RAY_AUTH_MODE=disabled, RAY_USAGE_STATS_ENABLED=0): 1 GPU
#   2. the SD-Turbo-size model with random weights (benchmarks/real_size.py --family sd), saved to WORK/model
#   3. python -m learner.main --config sd_turbo_aesthetic on that cluster, in the hybrid layout on the one GPU:
#      one policy worker on 0.9 GPU, the reward server on 0.1 GPU with jpeg_compressibility (no download),
#      model.compile=true, --epochs epochs of 16 pairs (2 rollout calls of 8), no held-out evaluation
#   4. one JSON line: gpu_busy_fraction, mfu_rollout, mfu_update per epoch and their medians after the first
#      epoch (cluster/gpu_ray/summarize_run.py), then the head is stopped (its own processes only)
# --cpu: the same sequence on CPU: the SD architecture at 1/64 size, 128 px, T = 4, 4 pairs, no compile,
# "GPUs" 0 (the dry run of the sequence on a machine without a GPU). Every step has a timeout.
set -euo pipefail

CPU=0; PYTHON=${PYTHON:-python3}; EPOCHS=3; STEPS=""; WORK=""; TIMEOUT_S=900
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpu) CPU=1; shift ;;
    --python) PYTHON=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --timeout-s) TIMEOUT_S=$2; shift 2 ;;
    *) echo "usage: bash cluster/gpu_ray/run_ray_job.sh [--cpu] [--python PYTHON] [--epochs N] [--steps T] [--work DIR] [--timeout-s S]" >&2; exit 2 ;;
  esac
done
[[ -f learner/main.py ]] || { echo "error: run from the repository root" >&2; exit 2; }
WORK=${WORK:-$(mktemp -d /tmp/sdpo-gpu-ray.XXXXXX)}
mkdir -p "$WORK"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RAY=$(dirname "$PYTHON")/ray; [[ -x $RAY ]] || RAY=ray
log() { echo "[run_ray_job $(date +%T)] $*" >&2; }

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port); DASH=$(free_port)
TEMP=/tmp/ray-gpu-job-$$-$PORT  # short (unix socket paths are limited) and this head's own
stop_head() {  # this head's processes only (all carry its temp dir), not every Ray node of the user as `ray stop` would
  local pids
  pids=$(pgrep -f -- "$TEMP" || true)
  [[ -n $pids ]] && kill $pids 2>/dev/null || true
  sleep 2
  pids=$(pgrep -f -- "$TEMP" || true)
  [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
  rm -rf "$TEMP"
}
trap stop_head EXIT

if [[ $CPU == 1 ]]; then
  RESOURCES=(--num-cpus=4 --num-gpus=0)
  BUILD=(--scale 0.015625 --dtype float32 --device cpu)
  RUN=(model.resolution=128 model.compile=false sampling.num_steps=${STEPS:-4} rollout.pairs_per_epoch=4 rollout.chunk_size=2
       learner.num_gpus=0 learner.num_cpus=1 reward.num_gpus=0 reward.num_cpus=0.25)
else
  RESOURCES=(--num-cpus=8 --num-gpus=1)
  BUILD=(--dtype float16 --device cuda)
  RUN=(model.compile=true rollout.pairs_per_epoch=16 rollout.chunk_size=8 learner.num_gpus=0.9 learner.num_cpus=4
       reward.num_gpus=0.1 reward.num_cpus=1)
  [[ -n $STEPS ]] && RUN+=(sampling.num_steps=$STEPS)
fi

log "1/4 ray start --head on 127.0.0.1:$PORT (${RESOURCES[*]})"
timeout 180 "$RAY" start --head --node-ip-address=127.0.0.1 --port="$PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DASH" \
  "${RESOURCES[@]}" --temp-dir="$TEMP" --disable-usage-stats >"$WORK/ray_start.log" 2>&1 \
  || { echo "error: ray start failed (see $WORK/ray_start.log)" >&2; tail -5 "$WORK/ray_start.log" >&2; exit 1; }

log "2/4 the SD-Turbo-size model, random weights (${BUILD[*]})"
rm -rf "$WORK/model"
timeout 600 "$PYTHON" -m benchmarks.real_size --family sd --out "$WORK/model" "${BUILD[@]}" >&2

log "3/4 python -m learner.main --config sd_turbo_aesthetic, hybrid on one device, $EPOCHS epochs"
rm -rf "$WORK/run"
set +e
timeout "$TIMEOUT_S" "$PYTHON" -m learner.main --config sd_turbo_aesthetic --epochs "$EPOCHS" --run-dir "$WORK/run" \
  ray.address="127.0.0.1:$PORT" model.pretrained="$WORK/model" model.local_files_only=true \
  layout=hybrid rollout.num_actors=0 learner.num_workers=1 \
  reward.name=jpeg_compressibility "reward.options={}" reward.num_servers=1 \
  eval.enabled=false output.tensorboard=false "${RUN[@]}" >"$WORK/job.log" 2>&1
RC=$?
set -e
tail -n 15 "$WORK/job.log" >&2
log "4/4 summary (exit code $RC)"
"$PYTHON" cluster/gpu_ray/summarize_run.py "$WORK/run" "job_exit_code=$RC" "device=$([[ $CPU == 1 ]] && echo cpu || echo gpu)" \
  "log=$WORK/job.log"
exit $RC
