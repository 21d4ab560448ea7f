"""Reading MLPerf compliance logs: a log's `:::MLLOG` records and what they say about the run.

The one reader of these lines (ssd/mllog.py is the one writer) for compliance/check.sh, the
summarizer, the submission checker and the tests. A record is the JSON after the prefix:
{"key", "value", "time_ms", "event_type", "namespace", "metadata": {"file", "lineno", ...}}.

    python -m compliance.mllog_records LOG KEY    prints KEY's first value ('' when absent)
"""

from __future__ import annotations

import json

from ssd import cli

PREFIX = ":::MLLOG "
# The hyperparameter keys every ssd-large log carries once, during init (docs/reference.md, in its order).
HYPERPARAMETERS = ("seed", "global_batch_size", "gradient_accumulation_steps", "opt_name", "opt_base_learning_rate",
                   "opt_weight_decay", "opt_learning_rate_warmup_steps", "opt_learning_rate_warmup_factor",
                   "opt_learning_rate_decay_boundary_epochs", "max_samples", "model_bn_span", "train_samples",
                   "eval_samples")


def read_log(path: str) -> list[dict]:
    """The records of a log in file order; other lines (and a launcher prefix before the
    `:::MLLOG`, as in `[1,0]<stdout>:`) are passed over. A record that is not JSON raises
    ValueError naming the file and line."""
    records = []
    with open(path, encoding="latin-1") as f:  # the official parsers' encoding
        for lineno, line in enumerate(f, 1):
            if PREFIX in line:
                try:
                    records.append(json.loads(line.split(PREFIX, 1)[1]))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: not a JSON log record ({err})") from None
    return records


def write_log(path: str, records: list[dict]) -> None:
    """Writes records one a line as mlperf_logging does (`:::MLLOG ` + json.dumps), so that
    write_log(p, read_log(log)) reproduces a log written by ssd/mllog.py byte for byte."""
    with open(path, "w", encoding="latin-1") as f:
        f.writelines(PREFIX + json.dumps(r) + "\n" for r in records)


def of_key(records: list[dict], key: str) -> list[dict]:
    return [r for r in records if r["key"] == key]


def first_value(records: list[dict], key: str, default=None):
    return next((r["value"] for r in records if r["key"] == key), default)


def run_minutes(records: list[dict]) -> float | None:
    """run_stop - run_start in minutes (one each in a valid log), None without both: the official
    result summarizer's time to train (result_summarizer._query_run_start_stop)."""
    start, stop = of_key(records, "run_start"), of_key(records, "run_stop")
    if not start or not stop:
        return None
    return (stop[0]["time_ms"] - start[0]["time_ms"]) / 60000.0


def converged(records: list[dict]) -> bool:
    """The run ended with run_stop status success: the official rule for a converged run
    (rcp_checker.read_submission_file; any other status or no run_stop is "not converged")."""
    stops = of_key(records, "run_stop")
    return bool(stops) and stops[-1].get("metadata", {}).get("status") == "success"


def epochs_trained(records: list[dict]) -> int:
    """The epoch_num of the last epoch_stop: the number of epochs the run trained (0 for none)."""
    stops = of_key(records, "epoch_stop")
    return stops[-1]["metadata"]["epoch_num"] if stops else 0


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("compliance.mllog_records", __doc__)
    parser.add_argument("log", help="an MLPerf log (mlperf_log.txt)")
    parser.add_argument("key", help="the MLLOG key whose first value is printed ('' when absent)")
    args = parser.parse_args(argv)
    try:
        print(first_value(read_log(args.log), args.key, ""))
    except (OSError, ValueError) as err:
        parser.fail(str(err))


if __name__ == "__main__":
    main()
