#!/usr/bin/env bash
# Checks an MLPerf compliance log against the ssd-large ruleset with the official checker.
#
#   compliance/check.sh LOG [closed|open]
#
# The division defaults to the log's own `submission_division` (read by compliance/mllog_records.py).
# Runs
#   python -m mlperf_logging.compliance_checker --config <absolute path of <division>_ssd_large.yaml>
# with the venv's python (SSD_VENV, default <repo>/.venv); warnings count as errors (--werror), so a
# key logged twice with the same value (every rank logging) fails too. Prints the checker's
# messages and exits non-zero when the log fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${SSD_VENV:-$ROOT/.venv}/bin/python"

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: compliance/check.sh LOG [closed|open]" >&2
  exit 2
fi
LOG="$1"
[[ -f "$LOG" ]] || { echo "check.sh: no log file '$LOG'" >&2; exit 2; }
DIVISION="${2:-}"
if [[ -z "$DIVISION" ]]; then
  DIVISION=$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m compliance.mllog_records "$LOG" submission_division) \
    || { echo "check.sh: cannot read $LOG" >&2; exit 1; }
  [[ -n "$DIVISION" ]] || { echo "check.sh: $LOG logs no submission_division; pass closed or open" >&2; exit 1; }
fi
case "$DIVISION" in
  closed|open) ;;
  *) echo "check.sh: division '$DIVISION' is neither closed nor open" >&2; exit 2 ;;
esac

RULES="$HERE/${DIVISION}_ssd_large.yaml"
echo "compliance check: $LOG against $RULES"
# --ruleset only selects the log parser (the same for every version); --log_output keeps the
# checker from writing compliance_checker.log into the current directory.
exec "$PY" -m mlperf_logging.compliance_checker --usage training --ruleset 6.1.0 --werror \
  --config "$RULES" --log_output /dev/null "$LOG" 2>&1
