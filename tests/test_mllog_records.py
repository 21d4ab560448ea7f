"""compliance.mllog_records, the reader, on logs the project's writer (ssd.mllog.MLLogger) wrote."""

import subprocess
import sys

import pytest

from compliance import mllog_records
from conftest import ROOT
from test_summarize import make_run


def test_read_then_write_reproduces_the_log(tmp_path):
    log = make_run(tmp_path / "run", 2.5) / "mlperf_log.txt"
    records = mllog_records.read_log(log)
    assert [r["key"] for r in records[:2]] == ["cache_clear", "init_start"] and records[-1]["key"] == "run_stop"
    mllog_records.write_log(tmp_path / "again.txt", records)
    assert (tmp_path / "again.txt").read_bytes() == log.read_bytes()


def test_launcher_prefixes_and_other_lines_are_passed_over(tmp_path):
    log = make_run(tmp_path / "run", 1.0) / "mlperf_log.txt"
    lines = log.read_text().splitlines()
    noisy = tmp_path / "console.txt"
    noisy.write_text("".join(f"[1,0]<stdout>:{line}\nepoch progress ...\n" for line in lines))
    assert mllog_records.read_log(noisy) == mllog_records.read_log(log)


def test_a_broken_record_is_named_by_file_and_line(tmp_path):
    log = make_run(tmp_path / "run", 1.0) / "mlperf_log.txt"
    lines = log.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:40] + "\n"
    log.write_text("".join(lines))
    with pytest.raises(ValueError, match=f"{log}:3: not a JSON log record"):
        mllog_records.read_log(log)


def test_what_a_converged_run_says(tmp_path):
    # demo evaluates after epochs 2, 3, ...: 0.1 after epoch 2, 0.3 (>= 0.225) after epoch 3.
    records = mllog_records.read_log(make_run(tmp_path / "run", 2.5, accuracies=(0.1, 0.3)) / "mlperf_log.txt")
    assert mllog_records.run_minutes(records) == pytest.approx(2.5)
    assert mllog_records.converged(records) and mllog_records.epochs_trained(records) == 3
    assert mllog_records.first_value(records, "seed") == 7
    assert mllog_records.first_value(records, "absent", "none") == "none"
    assert [r["value"] for r in mllog_records.of_key(records, "eval_accuracy")] == [0.1, 0.3]
    assert [mllog_records.first_value(records, k) is not None for k in mllog_records.HYPERPARAMETERS] == \
        [True] * len(mllog_records.HYPERPARAMETERS)  # the writer logs every key the reader names


def test_what_a_run_that_missed_the_target_says(tmp_path):
    records = mllog_records.read_log(make_run(tmp_path / "run", 4.0, accuracies=(0.1, 0.2)) / "mlperf_log.txt")
    assert not mllog_records.converged(records)  # run_stop status aborted
    assert mllog_records.epochs_trained(records) == 12  # demo's train.epochs
    assert mllog_records.run_minutes(records) == pytest.approx(4.0)
    without_stop = [r for r in records if r["key"] != "run_stop"]
    assert mllog_records.run_minutes(without_stop) is None and not mllog_records.converged(without_stop)


def test_command_line_prints_a_first_value(tmp_path):
    log = make_run(tmp_path / "run", 1.0) / "mlperf_log.txt"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "compliance.mllog_records", *map(str, args)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)

    assert run(log, "submission_division").stdout == "open\n"
    assert run(log, "absent").stdout == "\n"
    broken = run(tmp_path / "absent.txt", "seed")
    assert broken.returncode == 1 and "mllog_records:" in broken.stderr
    assert run(log).returncode == 2
