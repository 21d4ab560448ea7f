#!/usr/bin/env bash
# The test command: sets up (or repairs) the environment, runs the linters, then pytest with any
# arguments given.
#   ./run_tests.sh                 everything, the slow end-to-end runs included
#   ./run_tests.sh -m "not slow"   without the long end-to-end runs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./setup_env.sh --test
# ruff (pyproject.toml), shellcheck on every shell script, hadolint on the image: all must be clean.
mapfile -t scripts < <(find . -path ./.venv -prune -o -type f \( -name '*.sh' -o -name '*.sub' \) -print | sort)
.venv/bin/ruff check --quiet .
.venv/bin/shellcheck "${scripts[@]}"
.venv/bin/hadolint docker/Dockerfile
echo "lint: ruff, shellcheck (${#scripts[@]} scripts), hadolint clean"
exec .venv/bin/python -m pytest "$@"
