"""The trainer end to end on tiny generated data: ranks, averaging, resume, non-finite stop, target stop,
background scoring (its order, its failures), one trace, timing.json.

Every run is a real process (`python -m ssd.train` or tests/train_ranks.py) under real Horovod
(Gloo, MPI) on CPU: the demo model (width 0.125, 300 px), batches of 2-8 images.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf

from compliance import mllog_records
from conftest import child_env

TRAIN_IMAGES, VAL_IMAGES = 48, 16  # at batch 8: 6 steps per epoch


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, repo_root):
    """Generated COCO-style shapes converted to TFRecords: DIR/train, DIR/val."""
    root = tmp_path_factory.mktemp("tiny_data")
    run = lambda *argv: subprocess.run([sys.executable, "-m", *argv], cwd=repo_root, env=child_env(),  # noqa: E731
                                       check=True, stdout=subprocess.DEVNULL)
    run("ssd.data.synthetic", "--out", str(root / "coco"), "--train", str(TRAIN_IMAGES), "--val", str(VAL_IMAGES),
        "--workers", "1")
    for split in ("train", "val"):
        run("ssd.data.prepare", "--coco-dir", str(root / "coco"), "--split", split, "--out", str(root / "tfr" / split),
            "--shards", "2", "--workers", "1")  # 2 shards: one per rank at least
    return root / "tfr"


def train_argv(data, run_dir, *overrides):
    return ["-m", "ssd.train", "--config", "demo", f"data.data_dir={data}", f"run.run_dir={run_dir}",
            "train.batch_size=8", "data.deterministic=true", "train.seed=1", "run.progress_bar=false",
            "eval.epochs=", "eval.every=0", *overrides]


def mlperf_events(run_dir):
    return mllog_records.read_log(os.path.join(run_dir, "mlperf_log.txt"))


def run_status(run_dir):
    stops = [e for e in mlperf_events(run_dir) if e["key"] == "run_stop"]
    assert len(stops) == 1
    return stops[0]["metadata"]["status"]


def read_states(out, ranks):
    return [dict(np.load(os.path.join(out, f"rank{r}.npz"))) for r in range(ranks)]


def state_keys(state):
    return [k for k in state if k.startswith(("var", "opt"))]


# -- ranks ---------------------------------------------------------------------------------------


def test_two_ranks_average_like_one_rank_at_double_batch(hvd_launch, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    hvd_launch(["tests/train_ranks.py", str(two), "--steps", "2", "--batch", "2", "--same-images"], np=2)
    hvd_launch(["tests/train_ranks.py", str(one), "--steps", "2", "--batch", "4", "--same-images"],
               launcher="single")
    r0, r1 = read_states(two, 2)
    (single,) = read_states(one, 1)
    assert r0["size"] == 2 and single["size"] == 1
    for key in state_keys(r0):  # rank 1 started from other weights: broadcast + averaging
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)
    np.testing.assert_allclose(r0["losses"], single["losses"], rtol=1e-5)
    for key in state_keys(r0):
        scale = np.abs(single[key]).max() + 1e-12
        np.testing.assert_allclose(r0[key], single[key], rtol=0, atol=2e-5 * scale, err_msg=key)
    moved = [k for k in r0 if k.startswith("var") and not np.array_equal(r0[k], r0["init" + k[3:]])]
    assert len(moved) > 50  # the steps changed the weights: the comparison above is not vacuous


def test_two_ranks_keep_identical_weights_under_mpi(hvd_launch, tmp_path):
    hvd_launch(["tests/train_ranks.py", str(tmp_path), "--steps", "3", "--batch", "2"], np=2, launcher="mpi")
    r0, r1 = read_states(tmp_path, 2)
    assert r0["size"] == 2
    np.testing.assert_array_equal(r0["losses"], r1["losses"])  # the loss is averaged over ranks
    for key in state_keys(r0):
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)


def one_step(hvd_launch, out, *overrides):
    """One step of tests/train_ranks.py (1 rank, batch 2, seed 7, no weight decay: the momentum buffers
    hold the gradients), its XLA compilations dumped to out/xla: (the saved state, the XLA modules' files)."""
    dump = out / "xla"
    out.mkdir()
    hvd_launch(["tests/train_ranks.py", str(out), "--steps", "1", "--batch", "2", "train.warmup_steps=0",
                "train.weight_decay=0", *overrides], launcher="single", env={"XLA_FLAGS": f"--xla_dump_to={dump}"})
    return read_states(out, 1)[0], sorted(p.name for p in dump.glob("module_*")) if dump.exists() else []


@pytest.fixture(scope="module")
def float32_step(hvd_launch, tmp_path_factory):
    return one_step(hvd_launch, tmp_path_factory.mktemp("float32") / "run")


# (overrides, tolerance on the loss, on the gradients), each relative to float32's on the same batch
# from the same weights (gradients: the norm of the difference over the norm, all variables).
# Measured on this machine, loss / gradients: float32 + XLA 3.4e-7 / 5.5e-3, float16 + XLA 7.4e-5 /
# 0.17, bfloat16 7.8e-4 / 0.46; the bounds are about 2x those. The loss error follows each format's
# rounding (float16 keeps 11 significant bits, 2^-11 = 4.9e-4; bfloat16 8, 2^-8 = 3.9e-3; XLA in
# float32 only reorders sums). The gradients differ more: the loss's hard-negative mining picks the
# top-ranked background boxes, and where per-box losses nearly tie, rounding swaps which boxes are
# picked; the loss, a sum over them, barely moves, but the picked boxes are the ones that get a
# gradient. A skipped step (error 1.0), a loss scale left in the gradients (about 255) or a sign error
# (2.0) fails all three. float16 starts its dynamic loss scale at 2^8: at make_optimizer's 2^15 this
# first step's gradients overflow in float16 and the step is skipped (the dynamic scaling then halves it).
PRECISIONS = {
    "float32-xla": (["train.xla=true"], 1e-5, 2e-2),
    "float16-xla": (["train.precision=float16", "train.xla=true", "--loss-scale", "256"], 1e-3, 0.35),
    "bfloat16": (["train.precision=bfloat16"], 1e-2, 0.8),
}


@pytest.mark.parametrize("name", PRECISIONS)
def test_mixed_precision_and_xla_steps_match_float32(hvd_launch, tmp_path, float32_step, name):
    overrides, loss_tolerance, grad_tolerance = PRECISIONS[name]
    (reference, reference_xla), (state, xla) = float32_step, one_step(hvd_launch, tmp_path / "run", *overrides)
    assert str(state["policy"]) == {"float32": "float32", "float16": "mixed_float16",
                                    "bfloat16": "mixed_bfloat16"}[name.split("-")[0]]
    # XLA compiled the forward and the backward pass (modules named after `forward` in make_train_step)
    # exactly when train.xla asks for it, and the optimizer's update (tf_keras' `_update_step_xla`,
    # ssd.optimizer) always.
    for modules in (reference_xla, xla):
        assert any("_update_step_xla" in m for m in modules), modules
    assert not [m for m in reference_xla if "forward" in m]
    if "xla" in name:
        assert any("forward" in m and "backward" not in m for m in xla), xla
        assert any("backward_forward" in m for m in xla), xla
    else:
        assert not [m for m in xla if "forward" in m], xla
    names = [k[4:] for k in reference if k.startswith("grad")]
    for i in names:
        np.testing.assert_array_equal(state["init" + i], reference["init" + i])  # the same start
    loss, reference_loss = float(state["losses"][0]), float(reference["losses"][0])
    grads = np.concatenate([state["grad" + i].ravel() for i in names])
    reference_grads = np.concatenate([reference["grad" + i].ravel() for i in names])
    loss_error = abs(loss - reference_loss) / abs(reference_loss)
    grad_error = np.linalg.norm(grads - reference_grads) / np.linalg.norm(reference_grads)  # 1.0 if skipped
    print(f"{name}: loss {loss:.6f} vs float32 {reference_loss:.6f} (relative error {loss_error:.2e}), "
          f"gradients relative error {grad_error:.2e}")
    # A real step: most weights get a gradient (80% here: head weights that only see boxes neither matched nor
    # mined as hard negatives get none).
    assert np.count_nonzero(reference_grads) > 0.5 * reference_grads.size
    assert loss_error < loss_tolerance and grad_error < grad_tolerance


# -- resume (the kill-and-resume test: tests/test_resume.py) -------------------------------------


def test_fresh_run_refuses_a_run_dir_with_checkpoints(hvd_launch, tiny_data, tmp_path):
    hvd_launch(train_argv(tiny_data, tmp_path, "train.max_steps=1"), launcher="single")
    proc = hvd_launch(train_argv(tiny_data, tmp_path, "train.max_steps=1"), launcher="single", check=False)
    assert proc.returncode != 0 and "--resume" in proc.stdout


# -- failures --------------------------------------------------------------------------------------


def test_nan_loss_stops_every_rank_at_that_step(hvd_launch, tiny_data, tmp_path):
    proc = hvd_launch(train_argv(tiny_data, tmp_path, "train.batch_size=4", "train.debug_nan_step=3",
                                 "train.checkpoint_every_steps=2", "train.max_steps=10"), np=2, check=False)
    assert proc.returncode != 0
    last_good = str(tmp_path / "checkpoints" / "ckpt-2")
    for rank in (0, 1):
        assert f"rank {rank}: non-finite loss (nan) at step 3 (epoch 1); last good checkpoint: {last_good}" \
            in proc.stdout, proc.stdout[-3000:]
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == last_good
    assert run_status(tmp_path) == "aborted"
    assert "aborted: non-finite loss (nan) at step 3" in (tmp_path / "train_log.txt").read_text()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "aborted"


def test_missing_backbone_weights_is_a_clear_error(hvd_launch, tiny_data, tmp_path):
    proc = hvd_launch(train_argv(tiny_data, tmp_path, "train.from_scratch=false",
                                 f"train.backbone_weights={tmp_path / 'absent'}"), launcher="single", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout, proc.stdout[-3000:]
    assert f"ssd.train: train.backbone_weights='{tmp_path / 'absent'}': no checkpoint there" in proc.stdout


# -- evaluation schedule and target ----------------------------------------------------------------


EVERY_EPOCH = ["eval.epochs=1", "eval.every=1", "eval.every_after=1"]


def run_order(run_dir):
    """(key, epoch_num) of the run's epoch, evaluation and run records, in log order."""
    keys = ("run_start", "run_stop", "epoch_start", "epoch_stop", "eval_start", "eval_stop", "eval_accuracy")
    return [(e["key"], e["metadata"].get("epoch_num")) for e in mlperf_events(run_dir) if e["key"] in keys]


def check_timing(run_dir):
    """timing.json: the exact format, parts summing to run_stop - run_start as logged."""
    timing = json.loads((run_dir / "timing.json").read_text())
    assert list(timing["parts"]) == ["train_steps", "eval_inference", "scoring_wait", "checkpoints", "other"]
    events = {e["key"]: e["time_ms"] for e in mlperf_events(run_dir) if e["key"] in ("run_start", "run_stop")}
    assert timing["run_seconds"] == (events["run_stop"] - events["run_start"]) / 1000
    assert sum(timing["parts"].values()) == pytest.approx(timing["run_seconds"], abs=1e-9)
    assert timing["parts"]["train_steps"] > 0 and all(v >= 0 for v in timing["parts"].values())
    return timing


def checkpoint_steps(run_dir):
    indexes = glob.glob(str(run_dir / "checkpoints" / "ckpt-*.index"))
    return sorted(int(p.rsplit("-", 1)[1].split(".")[0]) for p in indexes)


@pytest.mark.parametrize("scoring", ["async", "sync"])
def test_tiny_target_stops_at_the_first_evaluation(hvd_launch, tiny_data, tmp_path, repo_root, scoring):
    # 2 ranks at 4 images: 6 steps per epoch; batch-norm statistics averaged, evaluation sharded.
    proc = hvd_launch(train_argv(tiny_data, tmp_path, "train.batch_size=4", "train.epochs=3",
                                 "eval.target_map=0.000001", *EVERY_EPOCH,
                                 *(["eval.async_scoring=false"] if scoring == "sync" else [])), np=2, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    order = run_order(tmp_path)
    log = (tmp_path / "train_log.txt").read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    if scoring == "sync":
        assert order == [("run_start", None), ("epoch_start", 1), ("epoch_stop", 1), ("eval_start", 1),
                         ("eval_stop", 1), ("eval_accuracy", 1), ("run_stop", None)]
        stop_step = 6
        assert [r["epoch"] for r in metrics["epochs"]] == [1]
    else:  # the score arrives while epoch 2 trains; every rank stops at that step
        assert order == [("run_start", None), ("epoch_start", 1), ("epoch_stop", 1), ("eval_start", 1),
                         ("eval_stop", 1), ("epoch_start", 2), ("eval_accuracy", 1), ("epoch_stop", 2),
                         ("run_stop", None)]
        stop_step = int(log.split("(known at step ")[1].split(",")[0])
        assert 6 < stop_step <= 12 and "in epoch 2)" in log
        assert [r["epoch"] for r in metrics["epochs"]] == [1, 2] and "map" not in metrics["epochs"][1]
    assert run_status(tmp_path) == "success" and metrics["status"] == "success"
    assert metrics["epochs"][0]["map"] >= 0.000001
    stats = [ln for ln in log.splitlines() if ln.startswith("eval after epoch 1: AP@[.5:.95] ")]
    assert len(stats) == (0 if scoring == "sync" else 1) and (not stats or "AR large" in stats[0])  # the 12 stats
    lines = [ln for ln in log.splitlines() if ln not in stats]
    assert lines[0].startswith("epoch 1 steps 6 loss ") and " mAP " in lines[0]
    assert "target mAP 1e-06 reached after epoch 1: mAP " in log
    assert checkpoint_steps(tmp_path) == [stop_step]  # none in the timed run; the final one after run_stop
    check_timing(tmp_path)
    assert json.loads((tmp_path / "detections.json").read_text())  # the evaluation's detections
    assert json.loads((tmp_path / "config.json").read_text())["eval"]["target_map"] == 0.000001
    assert glob.glob(str(tmp_path / "tensorboard" / "events*"))
    # The trainer's own order passes the ruleset (its accuracies raised to the ruleset's target).
    records = mlperf_events(tmp_path)
    for record in mllog_records.of_key(records, "eval_accuracy"):
        record["value"] = 0.3
    mllog_records.write_log(str(tmp_path / "raised.txt"), records)
    check = subprocess.run([str(repo_root / "compliance" / "check.sh"), str(tmp_path / "raised.txt"), "open"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout


def test_unreachable_target_runs_to_the_last_epoch_and_traces_once(hvd_launch, tiny_data, tmp_path):
    proc = hvd_launch(train_argv(tiny_data, tmp_path, "train.epochs=3", "eval.target_map=1.0", *EVERY_EPOCH,
                                 "train.checkpoint_every_epochs=1"), launcher="single", check=False)
    assert proc.returncode == 1, proc.stdout[-3000:]
    events = mlperf_events(tmp_path)
    assert [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"] == [1, 2, 3]
    assert run_status(tmp_path) == "aborted"
    log = (tmp_path / "train_log.txt").read_text()
    assert "target mAP 1.0 not reached in 3 epochs" in log
    # Three evaluations, one trace of the detector (and of the train step), both before run_start.
    assert "tf.function traces: train step 1, detector 1" in log
    assert checkpoint_steps(tmp_path) == [6, 12, 18]  # train.checkpoint_every_epochs=1, asynchronous
    assert check_timing(tmp_path)["parts"]["checkpoints"] > 0


def scorer_pids(run_dir):
    """Process ids of the `python -m ssd.scorer` processes writing run_dir/detections.json."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0") if entry.isdigit() else []
        except OSError:  # it ended meanwhile
            continue
        if b"ssd.scorer" in argv and str(run_dir / "detections.json").encode() in argv:
            pids.append(int(entry))
    return pids


def test_killed_scorer_ends_every_rank(tiny_data, tmp_path):
    """The scorer killed mid-scoring (it waits 600 s before scoring, as eval.debug_scoring_delay asks)."""
    run_dir = tmp_path / "run"
    horovodrun = str(Path(sys.executable).with_name("horovodrun"))
    argv = [horovodrun, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable,
            *train_argv(tiny_data, run_dir, "train.batch_size=4", "train.epochs=3", *EVERY_EPOCH,
                        "eval.debug_scoring_delay=600")]
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen(argv, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        log, deadline = run_dir / "mlperf_log.txt", time.time() + 600
        while not (log.exists() and '"eval_stop"' in log.read_text() and scorer_pids(run_dir)):
            assert proc.poll() is None and time.time() < deadline, "no evaluation was handed to the scorer"
            time.sleep(0.2)
        (pid,) = scorer_pids(run_dir)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()
        seconds = time.monotonic() - killed
    output = (tmp_path / "out.txt").read_text()
    assert proc.returncode != 0 and seconds < 60, (seconds, output[-3000:])
    for rank in (0, 1):
        assert re.search(rf"Process {rank} exit with status code [1-9]", output), output[-3000:]
    message = (f"scorer: the scoring process (pid {pid}) was killed by SIGKILL while scoring the evaluation "
               "after epoch 1")
    assert f"rank 0: {message}" in output
    assert "rank 1: the background scorer on rank 0 failed (its message is in rank 0's output)" in output
    assert f"aborted: {message}" in (run_dir / "train_log.txt").read_text()
    assert run_status(run_dir) == "aborted"
    assert not [e for e in mlperf_events(run_dir) if e["key"] == "eval_accuracy"]
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "aborted"


def test_scorer_error_ends_the_run_with_its_message(hvd_launch, tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    gt = json.loads((data / "val" / "instances.json").read_text())
    gt["images"].append(dict(gt["images"][0], id=999_999_999))  # an image the records do not hold
    (data / "val" / "instances.json").write_text(json.dumps(gt))
    proc = hvd_launch(train_argv(data, tmp_path / "run", "train.epochs=2", *EVERY_EPOCH), launcher="single",
                      check=False)
    assert proc.returncode == 3, proc.stdout[-3000:]
    log = (tmp_path / "run" / "train_log.txt").read_text()
    assert "aborted: scorer: the evaluation after epoch 1 failed: ValueError: the evaluated images do not match " \
           f"{data / 'val' / 'instances.json'}" in log
    assert run_status(tmp_path / "run") == "aborted"
