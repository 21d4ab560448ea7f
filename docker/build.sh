#!/usr/bin/env bash
# Builds the GPU image from the repository root:  docker/build.sh [IMAGE]   (default ssd-large:latest)
# The first build compiles OpenMPI and Horovod (about 15 minutes on 16 cores); code changes only
# redo the last layers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE=${1:-ssd-large:latest}
DOCKER_BUILDKIT=1 exec docker build -f "$ROOT/docker/Dockerfile" -t "$IMAGE" "$ROOT"
