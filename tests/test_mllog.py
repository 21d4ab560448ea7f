"""ssd.mllog: rank-0-only MLPerf lines, the caller's file and line, structural start/stop pairs."""

import inspect
import json

import numpy as np
import pytest

from ssd.config import load_config
from ssd.mllog import MLLogger

PREFIX = ":::MLLOG "
HYPERPARAMETERS = [  # docs/reference.md's order
    "seed", "global_batch_size", "gradient_accumulation_steps", "opt_name", "opt_base_learning_rate",
    "opt_weight_decay", "opt_learning_rate_warmup_steps", "opt_learning_rate_warmup_factor",
    "opt_learning_rate_decay_boundary_epochs", "max_samples", "model_bn_span", "train_samples", "eval_samples",
]


def records(path):
    return [json.loads(line[len(PREFIX):]) for line in path.read_text().splitlines()]


def line_here():
    return inspect.currentframe().f_back.f_lineno


def test_lines_carry_the_callers_file_and_line(tmp_path):
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0)
    event_line = line_here() + 1
    mll.event("custom_key", 7, {"extra": 1})
    block_line = line_here() + 1
    with mll.epoch(3):
        pass
    mll.close()
    event, start, stop = records(tmp_path / "log.txt")
    assert event["key"] == "custom_key" and event["value"] == 7 and event["event_type"] == "POINT_IN_TIME"
    assert event["metadata"] == {"file": "tests/test_mllog.py", "lineno": event_line, "extra": 1}
    assert (start["key"], start["event_type"]) == ("epoch_start", "INTERVAL_START")
    assert (stop["key"], stop["event_type"]) == ("epoch_stop", "INTERVAL_END")
    for r in (start, stop):
        assert r["metadata"] == {"file": "tests/test_mllog.py", "lineno": block_line, "epoch_num": 3}
    assert event["time_ms"] <= start["time_ms"] <= stop["time_ms"]


def test_other_ranks_write_nothing(tmp_path, capsys):
    cfg = load_config("demo")
    mll = MLLogger(str(tmp_path / "sub" / "log.txt"), rank=1)
    mll.cache_clear(True)
    with mll.block("init"):
        mll.submission_info(cfg)
        mll.hyperparameters(cfg, seed=1, global_batch=32, train_samples=10, eval_samples=5)
    with mll.run() as run:
        run.success()
    assert not (tmp_path / "sub").exists()
    assert capsys.readouterr().out == ""


def test_rank_zero_echoes_only_when_asked(tmp_path, capsys):
    quiet = MLLogger(str(tmp_path / "quiet.txt"), rank=0)
    quiet.cache_clear(True)
    quiet.close()
    assert capsys.readouterr().out == "" and (tmp_path / "quiet.txt").read_text().startswith(PREFIX)
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0, stdout=True)  # run.echo_mllog
    mll.cache_clear(True)
    mll.close()
    printed = capsys.readouterr().out
    assert printed == (tmp_path / "log.txt").read_text()
    assert json.loads(printed[len(PREFIX):])["key"] == "cache_clear"


@pytest.mark.parametrize("succeed, status", [(True, "success"), (False, "aborted")])
def test_run_status(tmp_path, succeed, status):
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0)
    with mll.run() as run:
        with mll.epoch(1):
            pass
        if succeed:
            run.success()
    logged = records(tmp_path / "log.txt")
    keys = [(r["key"], r["metadata"].get("status")) for r in logged]
    assert keys == [("run_start", None), ("epoch_start", None), ("epoch_stop", None), ("run_stop", status)]
    # The run's own times are the logged ones: timing.json's run_seconds is the score as logged.
    assert (run.start_ms, run.stop_ms) == (logged[0]["time_ms"], logged[-1]["time_ms"])
    assert run.run_seconds == (logged[-1]["time_ms"] - logged[0]["time_ms"]) / 1000


def test_exception_closes_every_block_and_aborts(tmp_path):
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0)
    with pytest.raises(RuntimeError, match="boom"):
        with mll.run() as run:
            with mll.epoch(1):
                with mll.eval(1):
                    run.success()
                    raise RuntimeError("boom")
    got = [(r["key"], r["metadata"].get("epoch_num"), r["metadata"].get("status"))
           for r in records(tmp_path / "log.txt")]
    assert got == [("run_start", None, None), ("epoch_start", 1, None), ("eval_start", 1, None),
                   ("eval_stop", 1, None), ("epoch_stop", 1, None), ("run_stop", None, "aborted")]


def test_submission_and_hyperparameters_from_config(tmp_path):
    cfg = load_config("ssd_large", ["run.submission_org=acme", "run.submission_platform=8xH100",
                                    "train.lr_decay_epochs=44,55", "data.crop_max_trials=1", "train.warmup_factor=2"])
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0)
    mll.cache_clear(cfg.run.cache_cleared)
    mll.submission_info(cfg)
    mll.hyperparameters(cfg, seed=42, global_batch=256, train_samples=117266, eval_samples=5000)
    got = {r["key"]: r["value"] for r in records(tmp_path / "log.txt")}
    keys = [r["key"] for r in records(tmp_path / "log.txt")]
    assert keys == ["cache_clear", "submission_benchmark", "submission_org", "submission_division",
                    "submission_status", "submission_platform"] + HYPERPARAMETERS
    assert got["cache_clear"] is False  # nothing dropped the page cache (run.cache_cleared defaults to false)
    assert (got["submission_benchmark"], got["submission_org"], got["submission_division"],
            got["submission_platform"]) == ("ssd-large", "acme", "closed", "8xH100")
    assert got["seed"] == 42 and got["global_batch_size"] == 256 and got["gradient_accumulation_steps"] == 1
    assert got["opt_name"] == "sgd"
    assert got["opt_base_learning_rate"] == pytest.approx(2.5e-3 * 256 / 32)  # scaled by global batch / 32
    assert got["opt_weight_decay"] == 5e-4
    assert got["opt_learning_rate_warmup_steps"] == 650 and got["opt_learning_rate_warmup_factor"] == 2
    assert type(got["opt_learning_rate_warmup_factor"]) is int  # the MLPerf rule's integer k
    assert got["opt_learning_rate_decay_boundary_epochs"] == [44, 55]
    assert got["max_samples"] == 1 and got["model_bn_span"] == 32
    assert (got["train_samples"], got["eval_samples"]) == (117266, 5000)


@pytest.mark.parametrize("cleared", [True, False])
def test_cache_clear_logs_what_the_launcher_did(tmp_path, cleared):
    cfg = load_config("ssd_large", [f"run.cache_cleared={str(cleared).lower()}"])
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0)
    mll.cache_clear(cfg.run.cache_cleared)
    with pytest.raises(ValueError, match="cache_clear takes a bool"):
        mll.cache_clear(1)
    (record,) = records(tmp_path / "log.txt")
    assert record["key"] == "cache_clear" and record["value"] is cleared


def test_eval_accuracy_is_a_float_with_its_epoch(tmp_path):
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0)
    mll.eval_accuracy(np.float32(0.25), 40)
    (r,) = records(tmp_path / "log.txt")
    assert r["key"] == "eval_accuracy" and r["metadata"]["epoch_num"] == 40
    assert r["value"] == pytest.approx(0.25)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_unresolved_seed_is_refused(tmp_path, seed):
    mll = MLLogger(str(tmp_path / "log.txt"), rank=0)
    with pytest.raises(ValueError, match="seed"):
        mll.hyperparameters(load_config("demo"), seed=seed, global_batch=2, train_samples=1, eval_samples=1)
