#!/usr/bin/env bash
# The multi-node rehearsal: ./run_and_time.sh with SYSTEM=2x1xCPU across two hosts made on this
# machine by tests/multinode/hosts.sh (root only), launched from node1 as on a cluster.
#
#   tests/multinode/rehearse.sh [section.key=value ...]                  mpirun
#   LAUNCHER=horovodrun tests/multinode/rehearse.sh [section.key=value ...]
#
# Other settings of run_and_time.sh (RUN_NAME, LOG_DIR, DATA_DIR, ...) pass through. The hosts are
# torn down on every exit (trap): no namespace, process or key is left behind. Exit status: that of
# run_and_time.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STATE=$(mktemp -u "${TMPDIR:-/tmp}/ssd-multinode.XXXXXX")

trap '"$HERE/hosts.sh" down "$STATE"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
"$HERE/hosts.sh" up "$STATE"
cd "$ROOT"
# In the background, so that a signal runs the traps at once instead of after the run.
SYSTEM=2x1xCPU HOSTFILE="$STATE/hostfile" "$HERE/hosts.sh" exec "$STATE" node1 ./run_and_time.sh "$@" &
wait $!
