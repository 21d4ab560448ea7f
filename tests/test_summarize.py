"""compliance.summarize: per-run minutes, checks and time split, the olympic score, the submission folder.

The scoring tests use logs written by ssd.mllog.MLLogger with set run times; the time split is read
from a timing.json written next to the log of a real `ssd.train` run.
"""

import json
import shutil
import subprocess
import sys

import pytest

from compliance import mllog_records, summarize
from conftest import ROOT, child_env
from ssd.config import load_config
from ssd.mllog import MLLogger
from test_train import tiny_data, train_argv  # noqa: F401  (tiny_data: the session's generated dataset)


def make_run(run_dir, minutes, accuracies=(0.1, 0.3), platform="2xcpu"):
    """A run directory whose mlperf_log.txt goes through the training sequence (demo config, 2 ranks)
    and whose run_stop is `minutes` after its run_start."""
    cfg = load_config("demo", [f"run.submission_platform={platform}", "run.submission_org=acme"])
    path = run_dir / "mlperf_log.txt"
    mll = MLLogger(str(path), rank=0, stdout=False)
    mll.cache_clear()
    with mll.block("init"):
        mll.submission_info(cfg)
        mll.hyperparameters(cfg, seed=7, global_batch=32, train_samples=64, eval_samples=16)
    with mll.run() as run:
        pending = list(accuracies)
        for epoch in range(1, cfg.train.epochs + 1):
            with mll.epoch(epoch):
                pass
            if epoch in cfg.eval_epochs() and pending:
                value = pending.pop(0)
                with mll.eval(epoch):
                    pass
                mll.eval_accuracy(value, epoch)
                if value >= cfg.eval.target_map:
                    run.success()
                    break
    mll.close()
    records = mllog_records.read_log(path)
    start = mllog_records.of_key(records, "run_start")[0]["time_ms"]
    records[-1]["time_ms"] = start + round(minutes * 60000)
    mllog_records.write_log(path, records)
    return run_dir


@pytest.mark.parametrize("minutes, score", [
    ([5.0, 3.0, 4.0, 6.0, 2.0], 4.0),
    ([1.0, 1.0, 1.0, 1.0, 9.0], 1.0),
    ([2.0, None, 4.0, 3.0, 10.0], (3.0 + 4.0 + 10.0) / 3),  # the failed run is the dropped slowest
])
def test_olympic_score(minutes, score):
    got, _ = summarize.olympic_score(minutes)
    assert got == pytest.approx(score)


@pytest.mark.parametrize("minutes, reason", [
    ([1.0, None, 2.0, None, 3.0], "2 of 5 runs failed"),
    ([1.0, 2.0, 3.0], "needs 5 runs, got 3"),
])
def test_no_olympic_score(minutes, reason):
    got, note = summarize.olympic_score(minutes)
    assert got is None and reason in note


def test_summary_of_five_runs_with_one_failure(tmp_path):
    minutes = [12.0, 10.5, 11.0, 13.0, 9.0]
    runs = [make_run(tmp_path / f"run{i}", m) for i, m in enumerate(minutes[:4])]
    runs.append(make_run(tmp_path / "run4", minutes[4], accuracies=(0.1, 0.2)))  # never reaches 0.225
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "compliance.summarize", *map(str, runs), "--json", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=summarize.ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout
    summary = json.loads(out.read_text())
    assert [r["passed"] for r in summary["runs"]] == [True, True, True, True, False]
    assert [r["minutes"] for r in summary["runs"]] == pytest.approx(minutes)
    assert summary["score_minutes"] == pytest.approx((11.0 + 12.0 + 13.0) / 3)  # 10.5 fastest, run4 failed
    assert any(m.startswith("Failed checks for eval_accuracy") for m in summary["runs"][4]["messages"])
    table = proc.stdout
    assert "FAIL" in table and "score: 12.00 minutes" in table


def test_submission_folder(tmp_path):
    runs = [make_run(tmp_path / f"run{i}", 10.0 + i) for i in range(5)]
    summary = summarize.summarize([str(r) for r in runs])
    given = {"number_of_nodes": "1", "accelerators_per_node": "0", "hw_notes": "test machine"}
    empty = summarize.write_submission(summary, str(tmp_path / "sub"), given, "tensorflow")
    org = tmp_path / "sub" / "acme"
    for i, run in enumerate(runs):
        assert (org / "results" / "2xcpu" / "ssd-large" / f"result_{i}.txt").read_text() == \
            (run / "mlperf_log.txt").read_text()
    desc = json.loads((org / "systems" / "2xcpu.json").read_text())
    assert list(desc) == summarize.SYSTEM_DESC_FIELDS
    assert (desc["submitter"], desc["division"], desc["system_name"]) == ("acme", "open", "2xcpu")
    assert desc["status"] == "Available on-premise" and desc["number_of_nodes"] == "1"
    assert "TensorFlow 2.18.1" in desc["framework"]
    assert "host_memory_capacity" in empty and "number_of_nodes" not in empty
    impl = org / "benchmarks" / "ssd-large" / "implementations" / "tensorflow"
    assert (impl / "ssd" / "mllog.py").is_file() and (impl / "compliance" / "closed_ssd_large.yaml").is_file()
    assert not list(impl.rglob("__pycache__"))
    # The official system description checker accepts the file.
    from mlperf_logging.system_desc_checker.system_desc_checker import check_system_desc

    valid, name, _, _ = check_system_desc(str(org / "systems" / "2xcpu.json"), "training", "6.1.0")
    assert valid and name == "2xcpu"


def test_runs_of_different_systems_are_refused(tmp_path):
    runs = [make_run(tmp_path / "a", 1.0), make_run(tmp_path / "b", 1.0, platform="other")]
    summary = summarize.summarize([str(r) for r in runs])
    with pytest.raises(ValueError, match="submission_platform"):
        summarize.write_submission(summary, str(tmp_path / "sub"), {}, "tensorflow")


def test_missing_log_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no compliance log"):
        summarize.summarize([str(tmp_path)])


# -- where the time went: timing.json ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tiny_data, tmp_path_factory):  # noqa: F811
    """A real `python -m ssd.train` run: demo preset, one process, one epoch of 6 steps, one evaluation."""
    run_dir = tmp_path_factory.mktemp("real") / "run"
    argv = train_argv(tiny_data, run_dir, "train.epochs=1", "eval.epochs=1", "eval.every=0", "eval.target_map=0.000001")
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return run_dir


def run_with_log(real_run, run_dir):
    run_dir.mkdir()
    shutil.copyfile(real_run / "mlperf_log.txt", run_dir / "mlperf_log.txt")
    return run_dir


def test_time_split_per_run(real_run, tmp_path):
    timed, untimed = run_with_log(real_run, tmp_path / "timed"), run_with_log(real_run, tmp_path / "untimed")
    seconds = 60 * mllog_records.run_minutes(mllog_records.read_log(real_run / "mlperf_log.txt"))
    shares = {"train_steps": 0.8, "eval_inference": 0.1, "scoring_wait": 0.05, "checkpoints": 0.0, "other": 0.05}
    timing = {"run_seconds": seconds, "parts": {part: share * seconds for part, share in shares.items()}}
    (timed / "timing.json").write_text(json.dumps(timing))
    out = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "compliance.summarize", str(timed), str(untimed), "--json", str(out)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    rows = proc.stdout.splitlines()
    assert rows[0].split() == ["run", "minutes", "seed", "epochs", "check", "time", "in", "run", "log"]
    assert "train 80% eval 10% wait 5% ckpt 0% other 5%" in rows[1] and str(timed) in rows[1], proc.stdout
    assert rows[2].split()[5] == "-" and str(untimed) in rows[2], proc.stdout
    assert rows[1].split()[2] == "1" and rows[1].split()[3] == "1"  # train_argv's seed, one epoch
    runs = json.loads(out.read_text())["runs"]
    assert runs[0]["timing"] == timing and runs[1]["timing"] is None


@pytest.mark.parametrize("content, reason", [
    ('{"run_seconds": 10, "parts": {"train_steps": 9}}', "expected run_seconds > 0 and parts train_steps"),
    ("not json", "not a timing file"),
])
def test_bad_timing_file_is_named(real_run, tmp_path, content, reason):
    run_dir = run_with_log(real_run, tmp_path / "run")
    (run_dir / "timing.json").write_text(content)
    proc = subprocess.run([sys.executable, "-m", "compliance.summarize", str(run_dir)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"summarize: {run_dir / 'timing.json'}: {reason}" in proc.stdout
