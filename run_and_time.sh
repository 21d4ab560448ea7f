#!/usr/bin/env bash
# One timed ssd-large run: set up, prepare the data, train to the target, check the log, print RESULT.
#
#   ./run_and_time.sh [--dry-run] [section.key=value ...]
#
#   ./run_and_time.sh                                      the built-in default: SYSTEM=cpu_demo,
#                                                          generated data, 2 Horovod ranks on the CPU
#   SYSTEM=8xH100 COCO_DIR=/data/coco ./run_and_time.sh    the benchmark on 8 GPUs
#
# SYSTEM (default cpu_demo) picks benchmark/configs/config_${SYSTEM}.sh: ranks per node, nodes,
# per-rank batch, launcher (single | horovodrun | mpirun | srun), data and log directories; any of them can
# be set in the environment instead. Arguments of the form section.key=value go to `ssd.train`
# after the system's own overrides. --dry-run prints every command and runs none.
#
# Steps: ./setup_env.sh $SETUP_FLAGS; the data (without COCO_DIR or DATA_DIR: the synthetic
# dataset, generated once into DEMO_DIR/coco; with COCO_DIR: nothing is downloaded, TFRecords are
# prepared into DATA_DIR when missing, and torchvision's ResNet34 from COCO_DIR/weights is imported
# into BACKBONE_WEIGHTS when missing); the page cache dropped where allowed (DROP_CACHES, below);
# then, timed, `python -m ssd.train` under the launcher into
# LOG_DIR/<RUN_NAME>; then compliance/check.sh on its mlperf_log.txt (to compliance_check.txt)
# and the pictures (python -m ssd.plots). Prints STARTING/ENDING TIMING RUN AT and
#   RESULT,SSD_LARGE,,<seconds>,<user>,<start>
# Exit status: 0 when training reached the target and the compliance check passed; otherwise the
# training's status if it failed, else 1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
for arg in "$@"; do
  [[ "$arg" == *=* ]] || { echo "run_and_time.sh: '$arg' is not a section.key=value override" >&2; exit 2; }
done

SYSTEM=${SYSTEM:-cpu_demo}
SYSTEM_CONFIG="benchmark/configs/config_${SYSTEM}.sh"
if [[ ! -f "$SYSTEM_CONFIG" ]]; then
  systems=(benchmark/configs/config_*.sh)
  systems=("${systems[@]#benchmark/configs/config_}")
  echo "run_and_time.sh: no $SYSTEM_CONFIG (systems: ${systems[*]%.sh})" >&2
  exit 2
fi
# shellcheck source=benchmark/configs/config_cpu_demo.sh
source "$SYSTEM_CONFIG"

die() { echo "run_and_time.sh: $*" >&2; exit 2; }
# Prints a command, then runs it unless this is a dry run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$DRY_RUN" == 1 ]] || "$@"
}

for name in CONFIG NNODES NRANKS_PER_NODE BATCH_SIZE LAUNCHER LOG_DIR; do
  [[ -n "${!name:-}" ]] || die "$SYSTEM_CONFIG sets no $name"
done
for name in NNODES NRANKS_PER_NODE BATCH_SIZE; do
  [[ "${!name}" =~ ^[1-9][0-9]*$ ]] || die "$name=${!name} is not a positive integer"
done
NP=$((NNODES * NRANKS_PER_NODE))
case "$LAUNCHER" in
  single) [[ "$NP" == 1 ]] || die "LAUNCHER=single runs one process, but NNODES x NRANKS_PER_NODE = $NP" ;;
  horovodrun|mpirun)
    [[ -n "${HOSTS:-}${HOSTFILE:-}" ]] \
      || die "set HOSTS, e.g. HOSTS=node1:$NRANKS_PER_NODE,node2:$NRANKS_PER_NODE, or HOSTFILE" ;;
  srun) [[ -n "${SLURM_JOB_ID:-}" || "$DRY_RUN" == 1 ]] \
          || die "LAUNCHER=srun runs inside a Slurm allocation: sbatch benchmark/slurm/run.sub" ;;
  *) die "LAUNCHER=$LAUNCHER is not one of single, horovodrun, mpirun, srun" ;;
esac
VENV="${SSD_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# The nodes: HOSTFILE (lines "<host> slots=<n>", the format mpirun and horovodrun both read) or
# else HOSTS ("<host>:<n>,..."): NNODES hosts with NRANKS_PER_NODE slots each, the first being this
# node (rank 0, which writes the run directory, runs here).
REMOTE_HOSTS=()
if [[ "$LAUNCHER" == horovodrun || "$LAUNCHER" == mpirun ]]; then
  if [[ -n "${HOSTFILE:-}" ]]; then
    [[ -f "$HOSTFILE" ]] || die "HOSTFILE=$HOSTFILE does not exist"
    HOSTFILE=$(cd "$(dirname "$HOSTFILE")" && pwd)/$(basename "$HOSTFILE")
    HOST_ARGS=(--hostfile "$HOSTFILE")
    host_slots=$(awk '!/^[[:space:]]*(#|$)/ { n = ""; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) n = substr($i, 7); print $1, n }' "$HOSTFILE")
  else
    HOST_ARGS=(-H "$HOSTS")
    host_slots=$(tr ',' '\n' <<< "$HOSTS" | awk -F: '{ print $1, $2 }')
  fi
  [[ $(wc -l <<< "$host_slots") == "$NNODES" ]] \
    || die "${HOSTFILE:-HOSTS=$HOSTS} names $(wc -l <<< "$host_slots") host(s), NNODES is $NNODES"
  local_names=" localhost 127.0.0.1 ::1 $(hostname) $(hostname -s) $(hostname -I 2>/dev/null || true) "
  while read -r host slots; do
    [[ "$slots" == "$NRANKS_PER_NODE" ]] \
      || die "host $host has ${slots:-no} slots in ${HOSTFILE:-HOSTS}, NRANKS_PER_NODE is $NRANKS_PER_NODE"
    [[ "$local_names" == *" $host "* ]] || REMOTE_HOSTS+=("$host")
  done <<< "$host_slots"
fi

# Runs the shell command $1 on every other node, in parallel, by ssh with a short timeout; prints one
# line for each node where it fails (does not answer, or the command fails: its last output line).
on_remote_hosts() {
  local i status failed=0 pids=() outs=()
  for i in "${!REMOTE_HOSTS[@]}"; do
    outs+=("$(mktemp)")
    ssh -o BatchMode=yes -o ConnectTimeout="${SSH_TIMEOUT:-10}" "${REMOTE_HOSTS[i]}" "$1" > "${outs[i]}" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    status=0
    wait "${pids[i]}" || status=$?
    if [[ "$status" == 255 ]]; then
      echo "run_and_time.sh: host ${REMOTE_HOSTS[i]} does not answer ssh ($(grep . "${outs[i]}" | tr -d '\r' | tail -1))" >&2
    elif [[ "$status" != 0 ]]; then
      echo "run_and_time.sh: host ${REMOTE_HOSTS[i]}: $(grep . "${outs[i]}" | tr -d '\r' | tail -1)" >&2
    fi
    [[ "$status" == 0 ]] || failed=1
    rm -f "${outs[i]}"
  done
  return "$failed"
}
# Every other node answers ssh and has this checkout and its environment at the same paths.
if [[ ${#REMOTE_HOSTS[@]} -gt 0 && "$DRY_RUN" == 0 ]]; then
  command -v ssh > /dev/null || die "ssh is missing: run ./setup_env.sh as root, or install openssh-client"
  on_remote_hosts "$(printf 'test -d %q -a -x %q || { echo %q; exit 3; }' "$ROOT" "$PY" \
                    "$ROOT or $PY is missing (the checkout and its environment must be at the same paths on every node)")" \
    || exit 2
fi

echo "system $SYSTEM: $NNODES node(s) x $NRANKS_PER_NODE rank(s), $BATCH_SIZE images per rank," \
  "global batch $((NP * BATCH_SIZE)), launcher $LAUNCHER, preset $CONFIG"

# 1. The environment (idempotent: only re-checks when nothing changed).
# shellcheck disable=SC2086
run ./setup_env.sh ${SETUP_FLAGS:-}

# 2. The data: TFRecords with train/ and val/ in DATA_DIR.
prepare_split() {  # COCO_DIR split OUT [prepare flags]: converts one split unless OUT holds a finished one
  if [[ -f "$3/manifest.json" ]]; then
    echo "data: $3 is prepared (manifest.json present)"
  else
    run "$PY" -m ssd.data.prepare --coco-dir "$1" --split "$2" --out "$3" "${@:4}"
  fi
}
if [[ -n "${REHEARSAL_DIR:-}" ]]; then
  # A small COCO excerpt (coco128): train on its annotated train2017 images, evaluate on all of its
  # images (the val split made from the same image set), so the network can memorise them.
  [[ -z "${COCO_DIR:-}" ]] || die "set COCO_DIR or REHEARSAL_DIR, not both"
  DATA_DIR=${DATA_DIR:-data/rehearsal/tfrecords}
  if [[ ! -f "$DATA_DIR/val/manifest.json" && ! -f "$REHEARSAL_DIR/annotations/instances_train2017.json" \
        && -n "${REHEARSAL_DOWNLOAD:-}" ]]; then
    run ssd/data/download_coco.sh "$REHEARSAL_DIR" "$REHEARSAL_DOWNLOAD"
  fi
  if [[ ! -f "$DATA_DIR/val/manifest.json" && ! -f "$REHEARSAL_DIR/annotations/instances_train2017.json" ]]; then
    die "$REHEARSAL_DIR/annotations/instances_train2017.json is missing: REHEARSAL_DIR holds train2017/ and annotations/"
  fi
  # 8 train shards: whole shards go to ranks, so more shards mix the ranks' records between epochs.
  prepare_split "$REHEARSAL_DIR" train "$DATA_DIR/train" --image-set train2017 --shards 8
  prepare_split "$REHEARSAL_DIR" val "$DATA_DIR/val" --image-set train2017 --shards 2
elif [[ -n "${COCO_DIR:-}" ]]; then
  [[ "$CONFIG" != demo ]] || die "the demo preset is for the generated data (4 classes), not COCO_DIR: use CONFIG=ssd_large"
  DATA_DIR=${DATA_DIR:-$COCO_DIR/tfrecords}
  for split in train val; do
    if [[ ! -f "$DATA_DIR/$split/manifest.json" && ! -f "$COCO_DIR/annotations/instances_${split}2017.json" ]]; then
      die "$COCO_DIR/annotations/instances_${split}2017.json is missing: get COCO 2017 with ssd/data/download_coco.sh $COCO_DIR"
    fi
    prepare_split "$COCO_DIR" "$split" "$DATA_DIR/$split"
  done
  # The ImageNet backbone: torchvision's ResNet34 (from download_coco.sh), imported once.
  BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-$COCO_DIR/weights/resnet34}
  if [[ -f "$BACKBONE_WEIGHTS/checkpoint" ]]; then
    echo "weights: $BACKBONE_WEIGHTS is imported"
  else
    pth="$COCO_DIR/weights/resnet34-333f7ec4.pth"
    [[ -f "$pth" ]] || die "$pth is missing: get it with ssd/data/download_coco.sh $COCO_DIR weights"
    run "$PY" -m ssd.import_weights --format torchvision "$pth" --out "$BACKBONE_WEIGHTS" --config "$CONFIG"
  fi
elif [[ -n "${DATA_DIR:-}" ]]; then
  for split in train val; do
    [[ -f "$DATA_DIR/$split/manifest.json" ]] \
      || die "$DATA_DIR/$split/manifest.json is missing: set COCO_DIR to prepare it, or unset DATA_DIR for the built-in default"
  done
else
  DEMO_DIR=${DEMO_DIR:-data/demo}
  DATA_DIR="$DEMO_DIR/tfrecords"
  # The generator writes each split's annotations last (atomically), val after train.
  if [[ -f "$DEMO_DIR/coco/annotations/instances_val2017.json" ]]; then
    echo "data: the synthetic dataset in $DEMO_DIR/coco is cached"
  else
    run rm -rf "$DEMO_DIR/coco" "$DATA_DIR"  # a partial earlier generation, and records made from it
    run "$PY" -m ssd.data.synthetic --out "$DEMO_DIR/coco"
  fi
  for split in train val; do
    prepare_split "$DEMO_DIR/coco" "$split" "$DATA_DIR/$split"
  done
fi

# 3. The launch, after the page cache is dropped.
# As MLPerf submitters do before each run: `sync`, then 3 written to the kernel's drop_caches (so
# the run reads its data from disk). cache_clear is logged True only when that write worked: this
# passes run.cache_cleared=true|false to ssd.train, after the user's overrides. DROP_CACHES (default
# /proc/sys/vm/drop_caches; tests point it at a file of their own) needs root and a writable /proc.
drop_page_cache() {
  local knob=${DROP_CACHES:-/proc/sys/vm/drop_caches}
  CACHE_CLEARED=false
  if [[ "$DRY_RUN" == 1 ]]; then
    run sync
    echo "+ echo 3 > $knob"
    if [[ -w "$knob" ]]; then CACHE_CLEARED=true; fi
  elif sync && (echo 3 > "$knob") 2>/dev/null; then
    CACHE_CLEARED=true
    echo "page cache dropped (sync; echo 3 > $knob)"
  else
    echo "run_and_time.sh: cannot write $knob (needs root and a writable /proc): the page cache is not dropped, cache_clear False"
  fi
}
RUN_NAME=${RUN_NAME:-${SYSTEM}_$(date -u +%Y%m%dT%H%M%SZ)_$$}
RUN_DIR="$LOG_DIR/$RUN_NAME"
[[ ! -e "$RUN_DIR" ]] || die "$RUN_DIR exists: each run needs a new RUN_NAME"
drop_page_cache
TRAIN=("$PY" -m ssd.train --config "$CONFIG" "run.run_dir=$RUN_DIR" "data.data_dir=$DATA_DIR"
       "train.batch_size=$BATCH_SIZE" "run.progress_bar=false")
if [[ -n "${SUBMISSION_ORG:-}" ]]; then TRAIN+=("run.submission_org=$SUBMISSION_ORG"); fi
if [[ -n "${SUBMISSION_PLATFORM:-}" ]]; then TRAIN+=("run.submission_platform=$SUBMISSION_PLATFORM"); fi
if [[ -n "${EVAL_BATCH_SIZE:-}" ]]; then TRAIN+=("eval.batch_size=$EVAL_BATCH_SIZE"); fi
if [[ -n "${PRECISION:-}" ]]; then TRAIN+=("train.precision=$PRECISION"); fi
if [[ -n "${BACKBONE_WEIGHTS:-}" ]]; then TRAIN+=("train.backbone_weights=$BACKBONE_WEIGHTS"); fi
TRAIN+=("$@" "run.cache_cleared=$CACHE_CLEARED")  # last: what the launcher did, not a setting
# Every other node has the data at DATA_DIR (shared, or a copy at the same path on each node).
if [[ "$DRY_RUN" == 0 ]]; then
  data=$(cd "$DATA_DIR" && pwd)
  # shellcheck disable=SC2016  # $f expands on the node
  check_data=$(printf 'for f in %q %q; do test -f "$f" || { echo "$f is missing (DATA_DIR must hold the TFRecords on every node)"; exit 3; }; done' \
               "$data/train/manifest.json" "$data/val/manifest.json")
  if [[ ${#REMOTE_HOSTS[@]} -gt 0 ]]; then on_remote_hosts "$check_data" || exit 2; fi
  if [[ "$LAUNCHER" == srun ]]; then
    srun --nodes="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=0 sh -c "$check_data" || exit 2
  fi
fi
# The interface the nodes reach each other on (IFACE, e.g. eth0 or ib0; empty: the launchers
# choose): OpenMPI's TCP transports, Horovod's Gloo and NCCL's sockets use it.
if [[ -n "${IFACE:-}" ]]; then
  export HOROVOD_GLOO_IFACE="$IFACE" NCCL_SOCKET_IFNAME="$IFACE" OMPI_MCA_btl_tcp_if_include="$IFACE"
fi
# shellcheck disable=SC2206
FLAGS=(${LAUNCHER_FLAGS:-})
case "$LAUNCHER" in
  single) LAUNCH=("${TRAIN[@]}") ;;
  horovodrun)  # passes this whole environment to every rank
    if [[ -n "${IFACE:-}" ]]; then FLAGS+=(--network-interfaces "$IFACE"); fi
    LAUNCH=("$PY" -m ssd.horovodrun "${FLAGS[@]}" -np "$NP" "${HOST_ARGS[@]}" "${TRAIN[@]}") ;;
  mpirun)  # passes only the variables named by -x: the paths, Horovod's, NCCL's, OpenMP's and TensorFlow's
    if [[ "$(id -u)" == 0 ]]; then FLAGS+=(--allow-run-as-root); fi
    if [[ -n "${IFACE:-}" ]]; then FLAGS+=(--mca btl_tcp_if_include "$IFACE" --mca oob_tcp_if_include "$IFACE"); fi
    for name in PATH LD_LIBRARY_PATH PYTHONPATH $(compgen -e | grep -E '^(HOROVOD|NCCL|OMP|TF_(CPP|NUM|ENABLE|FORCE|GPU|XLA))_' | sort); do
      if [[ -n "${!name+set}" ]]; then FLAGS+=(-x "$name"); fi
    done
    LAUNCH=(mpirun "${FLAGS[@]}" -np "$NP" "${HOST_ARGS[@]}" --bind-to none --map-by slot "${TRAIN[@]}") ;;
  srun)  # Slurm starts the ranks on the allocation's nodes (no ssh), PMIx connects them; passes this environment
    LAUNCH=(srun --mpi=pmix --nodes="$NNODES" --ntasks-per-node="$NRANKS_PER_NODE" --kill-on-bad-exit=1
            "${FLAGS[@]}" "${TRAIN[@]}") ;;
esac
if [[ "$DRY_RUN" == 1 ]]; then
  run "${LAUNCH[@]}"
  run compliance/check.sh "$RUN_DIR/mlperf_log.txt"
  run "$PY" -m ssd.plots "$RUN_DIR"
  exit 0
fi
mkdir -p "$RUN_DIR"

start=$(date +%s)
start_fmt=$(date +"%Y-%m-%d %r")
echo "STARTING TIMING RUN AT $start_fmt"
set +e
run "${LAUNCH[@]}"
train_status=$?
set -e
end=$(date +%s)
end_fmt=$(date +"%Y-%m-%d %r")
echo "ENDING TIMING RUN AT $end_fmt"

# 4. The compliance check and the pictures (outside the timed part).
set +e
run compliance/check.sh "$RUN_DIR/mlperf_log.txt" 2>&1 | tee "$RUN_DIR/compliance_check.txt"
check_status=${PIPESTATUS[0]}
run "$PY" -m ssd.plots "$RUN_DIR" || echo "run_and_time.sh: the pictures failed (the result stands)" >&2
set -e

echo "RESULT,SSD_LARGE,,$((end - start)),${USER:-$(id -un)},$start_fmt"
if [[ "$train_status" != 0 ]]; then
  echo "run_and_time.sh: training exited $train_status (target not reached, or it failed); see $RUN_DIR" >&2
  exit "$train_status"
fi
if [[ "$check_status" != 0 ]]; then
  echo "run_and_time.sh: the compliance check failed; see $RUN_DIR/compliance_check.txt" >&2
  exit 1
fi
echo "run directory: $RUN_DIR (the compliance check passed)"
