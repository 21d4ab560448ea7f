#!/usr/bin/env bash
# Runs ./run_and_time.sh in the GPU image with the data and log directories mounted:
#
#   COCO_DIR=/data/coco SYSTEM=8xH100 docker/run.sh [section.key=value ...]
#   docker/run.sh                       the built-in default (generated data) in the image
#
# COCO_DIR (host; holds train2017/, val2017/, annotations/, weights/ from
# ssd/data/download_coco.sh) is mounted read-write at /data/coco: the TFRecords and the imported
# backbone are written there once. LOG_DIR (host, default ./runs) is mounted at /results and
# receives the run directories; DEMO_DIR (host, default ./data/demo) caches the generated dataset.
# IMAGE (default ssd-large:latest); SYSTEM (default 8xH100 with COCO_DIR, else cpu_demo); any
# other setting of benchmark/configs/config_<SYSTEM>.sh can be passed with -e through DOCKER_ARGS.
set -euo pipefail
IMAGE=${IMAGE:-ssd-large:latest}
LOG_DIR=$(realpath -m "${LOG_DIR:-runs}")
mkdir -p "$LOG_DIR"
ARGS=(--rm --gpus all --ipc=host --ulimit memlock=-1 --ulimit stack=67108864
      -v "$LOG_DIR:/results" -e LOG_DIR=/results)
if [[ -n "${COCO_DIR:-}" ]]; then
  ARGS+=(-v "$(realpath "$COCO_DIR"):/data/coco" -e COCO_DIR=/data/coco -e "SYSTEM=${SYSTEM:-8xH100}")
else
  DEMO_DIR=$(realpath -m "${DEMO_DIR:-data/demo}")
  mkdir -p "$DEMO_DIR"
  ARGS+=(-v "$DEMO_DIR:/data/demo" -e DEMO_DIR=/data/demo -e "SYSTEM=${SYSTEM:-cpu_demo}")
fi
for name in RUN_NAME SUBMISSION_ORG SUBMISSION_PLATFORM BATCH_SIZE NRANKS_PER_NODE; do
  if [[ -n "${!name:-}" ]]; then ARGS+=(-e "$name=${!name}"); fi
done
read -r -a EXTRA <<< "${DOCKER_ARGS:-}"  # word-split as docker arguments
exec docker run "${ARGS[@]}" "${EXTRA[@]}" "$IMAGE" ./run_and_time.sh "$@"
