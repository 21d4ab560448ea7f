#!/usr/bin/env bash
# Creates or repairs the project's virtual environment, then checks it.
#
#   ./setup_env.sh [--test] [--gpu]
#
#   --test  also install requirements-test.txt (pytest, CPU PyTorch for the reference comparisons)
#   --gpu   tensorflow[and-cuda] instead of tensorflow-cpu (same version), Horovod built with NCCL
#
# Idempotent: a second call whose inputs (requirements files, this script, the flags) are unchanged
# only re-runs the final check. A venv whose python is broken is recreated; a stale one is updated.
# Horovod 0.28.1 is built once from its source package (about 12 minutes on 2 cores) and the wheel
# is cached in $SSD_WHEEL_CACHE (default ~/.cache/ssd-large/wheels), outside the checkout.
#
# Environment: SSD_VENV (default <repo>/.venv), SSD_WHEEL_CACHE, SSD_PYTHON (default python3.11,
# else python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${SSD_VENV:-$ROOT/.venv}"
CACHE="${SSD_WHEEL_CACHE:-$HOME/.cache/ssd-large/wheels}"
HOROVOD_VERSION=0.28.1
WITH_TEST=0
WITH_GPU=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    --gpu) WITH_GPU=1 ;;
    *) echo "setup_env.sh: unknown argument '$arg' (use --test, --gpu)" >&2; exit 2 ;;
  esac
done

log() { echo "[setup_env] $*" >&2; }
die() { echo "[setup_env] ERROR: $*" >&2; exit 1; }

PY="${SSD_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if command -v python3.11 >/dev/null; then PY=python3.11; else PY=python3; fi
fi
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || die "Python 3.11 is required ($PY is $("$PY" --version 2>&1)); set SSD_PYTHON"

mkdir -p "$(dirname "$VENV")" "$CACHE"
# One setup at a time per venv (tests and run_and_time.sh may both call this).
exec 9>"$VENV.lock"
flock 9

# OpenMPI from the system packages when we can install it; Horovod then builds with MPI too.
if ! command -v mpirun >/dev/null && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  log "installing OpenMPI (openmpi-bin, libopenmpi-dev)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
fi
WITH_MPI=0
if command -v mpicxx >/dev/null && command -v mpirun >/dev/null; then WITH_MPI=1; fi

stamp_value() {
  cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" "$ROOT/setup_env.sh" | sha256sum | cut -c1-16
  echo "test=$WITH_TEST gpu=$WITH_GPU mpi=$WITH_MPI"
}
STAMP="$VENV/.ssd-setup-stamp"

if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "venv $VENV is broken (its python does not run): recreating it"
  rm -rf "$VENV"
fi
if [[ ! -d "$VENV" ]]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

if [[ "$(cat "$STAMP" 2>/dev/null)" != "$(stamp_value)" ]]; then
  rm -f "$STAMP"
  log "installing the pinned packages"
  reqs=$(mktemp)
  if [[ "$WITH_GPU" == 1 ]]; then
    sed -E 's/^tensorflow-cpu==/tensorflow[and-cuda]==/' "$ROOT/requirements.txt" > "$reqs"
  else
    cp "$ROOT/requirements.txt" "$reqs"
  fi
  [[ "$WITH_TEST" == 1 ]] && grep -v '^#' "$ROOT/requirements-test.txt" >> "$reqs"
  "$VPY" -m pip install -q --upgrade pip==24.2 setuptools==75.1.0 wheel==0.44.0
  "$VPY" -m pip install -q -r "$reqs"
  rm -f "$reqs"

  TF_VERSION=$("$VPY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)
  KEY="horovod-$HOROVOD_VERSION-tf$TF_VERSION-py311-mpi$WITH_MPI-gpu$WITH_GPU"
  WHEEL_DIR="$CACHE/$KEY"
  if ! ls "$WHEEL_DIR"/horovod-*.whl >/dev/null 2>&1; then
    log "building Horovod $HOROVOD_VERSION from source (mpi=$WITH_MPI gpu=$WITH_GPU); this takes about 12 minutes once"
    build=$(mktemp -d)
    export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1
    if [[ "$WITH_MPI" == 1 ]]; then export HOROVOD_WITH_MPI=1; else export HOROVOD_WITHOUT_MPI=1; fi
    if [[ "$WITH_GPU" == 1 ]]; then export HOROVOD_GPU_OPERATIONS=NCCL; fi
    MAKEFLAGS="-j$(nproc)" "$VPY" -m pip wheel -q --no-build-isolation --no-deps --no-binary horovod \
      "horovod==$HOROVOD_VERSION" -w "$build" > "$build/build.log" 2>&1 \
      || { tail -40 "$build/build.log" >&2; die "the Horovod build failed (log above, full log in $build/build.log)"; }
    mkdir -p "$WHEEL_DIR.tmp.$$"
    mv "$build"/horovod-*.whl "$WHEEL_DIR.tmp.$$/"
    rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.tmp.$$" "$WHEEL_DIR"
    rm -rf "$build"
  fi
  log "installing the cached Horovod wheel from $WHEEL_DIR"
  "$VPY" -m pip install -q --no-deps --force-reinstall "$WHEEL_DIR"/horovod-*.whl
  stamp_value > "$STAMP"
fi

# The final check: Horovod imports, initialises, and has the capabilities this machine should give it.
TF_CPP_MIN_LOG_LEVEL=2 TF_USE_LEGACY_KERAS=1 SSD_EXPECT_MPI="$WITH_MPI" SSD_EXPECT_NCCL="$WITH_GPU" \
  "$VPY" - <<'PYEOF' || { rm -f "$STAMP"; die "the environment check failed (message above); run ./setup_env.sh again to repair it"; }
import os, sys
import horovod.tensorflow as hvd
hvd.init()
missing = []
if not hvd.gloo_built():
    missing.append("Gloo")
if os.environ["SSD_EXPECT_MPI"] == "1" and not hvd.mpi_built():
    missing.append("MPI")
if os.environ["SSD_EXPECT_NCCL"] == "1" and not hvd.nccl_built():
    missing.append("NCCL")
if missing:
    sys.exit(f"Horovod was built without {', '.join(missing)}")
PYEOF
log "ok: $VENV (horovod $HOROVOD_VERSION, gloo, mpi=$WITH_MPI, nccl=$WITH_GPU)"
