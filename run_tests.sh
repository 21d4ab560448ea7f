#!/usr/bin/env bash
# The test command: sets up (or repairs) the environment, then runs pytest with any arguments given.
#   ./run_tests.sh                 everything, the slow end-to-end run included
#   ./run_tests.sh -m "not slow"   without the long end-to-end runs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./setup_env.sh --test
exec .venv/bin/python -m pytest "$@"
