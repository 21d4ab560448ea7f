#!/usr/bin/env bash
# Creates or repairs the project's virtual environment, then checks it.
#
#   ./setup_env.sh [--test] [--gpu]
#
#   --test  also install requirements-test.txt (pytest, CPU PyTorch for the reference comparisons,
#           the linters ruff, shellcheck and hadolint)
#   --gpu   tensorflow[and-cuda] (the same version, with the CUDA libraries), Horovod built with NCCL
#
# Idempotent: a second call whose inputs (requirements files, this script, the flags) are unchanged
# only re-runs the final check (an install with --test also serves a call without it). A venv whose
# python is broken, or that was made from other pins, is recreated; one with a missing or broken
# package is repaired in place.
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

# System packages, when we can install them: OpenMPI (Horovod then builds with MPI too), and the ssh
# client and server with which mpirun and horovodrun start ranks on other nodes (the multi-node
# rehearsal, tests/multinode/hosts.sh, runs its own sshd per simulated node).
packages=()
if ! command -v mpirun >/dev/null; then packages+=(openmpi-bin libopenmpi-dev); fi
if ! command -v ssh >/dev/null || [[ ! -x /usr/sbin/sshd ]]; then packages+=(openssh-client openssh-server); fi
if [[ ${#packages[@]} -gt 0 && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  log "installing ${packages[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
WITH_MPI=0
if command -v mpicxx >/dev/null && command -v mpirun >/dev/null; then WITH_MPI=1; fi

# The stamp: a hash of the inputs, then the flags it was installed with.
inputs_hash() {
  cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" "$ROOT/setup_env.sh" | sha256sum | cut -c1-16
}
stamp_value() {
  printf '%s gpu=%s mpi=%s test=%s\n' "$(inputs_hash)" "$WITH_GPU" "$WITH_MPI" "$WITH_TEST"
}
STAMP="$VENV/.ssd-setup-stamp"

read -r stamp_hash stamp_gpu stamp_mpi stamp_test 2>/dev/null < "$STAMP" || stamp_hash=""
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "venv $VENV is broken (its python does not run): recreating it"
  rm -rf "$VENV"
elif [[ -n "$stamp_hash" && "$stamp_hash $stamp_gpu $stamp_mpi" != "$(inputs_hash) gpu=$WITH_GPU mpi=$WITH_MPI" ]]; then
  # Other pins or flags: start clean, so nothing of the old set (a replaced distribution) stays behind.
  log "venv $VENV was made from other pins or flags: recreating it"
  rm -rf "$VENV"
  stamp_hash=""
fi
if [[ ! -d "$VENV" ]]; then
  log "creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

quiet() {  # runs a command, hiding this machine's pip index notices; the command's status is kept
  { "$@" 2>&1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

install() {
  rm -f "$STAMP"
  log "installing the pinned packages"
  local reqs
  reqs=$(mktemp)
  if [[ "$WITH_GPU" == 1 ]]; then
    sed -E 's/^tensorflow==/tensorflow[and-cuda]==/' "$ROOT/requirements.txt" > "$reqs"
  else
    cp "$ROOT/requirements.txt" "$reqs"
  fi
  if [[ "$WITH_TEST" == 1 ]]; then grep -v '^#' "$ROOT/requirements-test.txt" >> "$reqs"; fi
  quiet "$VPY" -m pip install -q --upgrade pip==24.2 setuptools==80.9.0 wheel==0.44.0
  quiet "$VPY" -m pip install -q -r "$reqs"
  rm -f "$reqs"

  local tf_version key wheel_dir build
  tf_version=$("$VPY" -c 'import importlib.metadata as m; print(m.version("tensorflow"))')
  key="horovod-$HOROVOD_VERSION-tf$tf_version-py311-mpi$WITH_MPI-gpu$WITH_GPU"
  wheel_dir="$CACHE/$key"
  if ! ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1; then
    log "building Horovod $HOROVOD_VERSION from source (mpi=$WITH_MPI gpu=$WITH_GPU); this takes about 12 minutes once"
    build=$(mktemp -d)
    export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1
    if [[ "$WITH_MPI" == 1 ]]; then export HOROVOD_WITH_MPI=1; else export HOROVOD_WITHOUT_MPI=1; fi
    if [[ "$WITH_GPU" == 1 ]]; then export HOROVOD_GPU_OPERATIONS=NCCL; fi
    MAKEFLAGS="-j$(nproc)" "$VPY" -m pip wheel -q --no-build-isolation --no-deps --no-binary horovod \
      "horovod==$HOROVOD_VERSION" -w "$build" > "$build/build.log" 2>&1 \
      || { tail -40 "$build/build.log" >&2; die "the Horovod build failed (log above, full log in $build/build.log)"; }
    # Into the cache atomically: a half-copied wheel is never found by a later setup.
    mkdir -p "$wheel_dir.tmp.$$"
    mv "$build"/horovod-*.whl "$wheel_dir.tmp.$$/"
    rm -rf "$wheel_dir" && mv "$wheel_dir.tmp.$$" "$wheel_dir"
    rm -rf "$build"
  fi
  log "installing the cached Horovod wheel from $wheel_dir"
  quiet "$VPY" -m pip install -q --no-deps --force-reinstall "$wheel_dir"/horovod-*.whl
  stamp_value > "$STAMP"
}

# The check: every pinned package imports, pip sees no broken requirement, and Horovod initialises
# with the capabilities this machine should give it. Its output is shown only when it fails.
check() {
  SSD_EXPECT_MPI="$WITH_MPI" SSD_EXPECT_NCCL="$WITH_GPU" SSD_EXPECT_TEST="$WITH_TEST" \
    TF_CPP_MIN_LOG_LEVEL=3 TF_USE_LEGACY_KERAS=1 "$VPY" - <<'PYEOF'
import importlib, os, subprocess, sys
modules = ["tensorflow", "tf_keras", "numpy", "pycocotools.cocoeval", "faster_coco_eval", "mlperf_logging.mllog",
           "PIL", "tqdm", "matplotlib", "yaml", "horovod.tensorflow"]
if os.environ["SSD_EXPECT_TEST"] == "1":
    modules += ["pytest", "torch"]
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as err:
        sys.exit(f"cannot import {name}: {err}")
pip = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
if pip.returncode:
    sys.exit(f"pip check: {pip.stdout.strip()}")
import horovod.tensorflow as hvd
hvd.init()
missing = [name for name, built, expected in [
    ("Gloo", hvd.gloo_built(), True),
    ("MPI", hvd.mpi_built(), os.environ["SSD_EXPECT_MPI"] == "1"),
    ("NCCL", hvd.nccl_built(), os.environ["SSD_EXPECT_NCCL"] == "1"),
] if expected and not built]
if missing:
    sys.exit(f"Horovod was built without {', '.join(missing)}")
PYEOF
}

checked() {  # check(), printing its output only on failure
  local out
  out=$(check 2>&1) && return 0
  echo "$out" | grep -v -E "Unable to register|absl::InitializeLog|cuda_" | tail -5 >&2
  return 1
}

# Up to date: same inputs and flags, and the tests' packages too where asked for.
if [[ -n "$stamp_hash" && ( "$WITH_TEST" == 0 || "$stamp_test" == "test=1" ) ]] && checked; then
  :
else
  if [[ -n "$stamp_hash" ]]; then log "the environment is incomplete or broken: repairing it"; fi
  install
  checked || { rm -f "$STAMP"; die "the environment check failed (message above)"; }
fi
log "ok: $VENV (horovod $HOROVOD_VERSION, gloo, mpi=$WITH_MPI, nccl=$WITH_GPU)"
