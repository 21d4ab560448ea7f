"""The trainer end to end on tiny generated data: ranks, averaging, resume, non-finite stop, target stop.

Every run is a real process (`python -m ssd.train` or tests/train_ranks.py) under real Horovod
(Gloo, MPI) on CPU: the demo model (width 0.125, 300 px), batches of 2-8 images.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf

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
    with open(os.path.join(run_dir, "mlperf_log.txt")) as f:
        return [json.loads(line.split(":::MLLOG", 1)[1]) for line in f if ":::MLLOG" in line]


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


@pytest.mark.parametrize("overrides", [["train.precision=float16", "train.xla=true"], ["train.precision=bfloat16"]],
                         ids=["float16-xla", "bfloat16"])
def test_mixed_precision_and_xla_steps_train(hvd_launch, tmp_path, overrides):
    hvd_launch(["tests/train_ranks.py", str(tmp_path), "--steps", "2", "--batch", "2", *overrides], launcher="single")
    (state,) = read_states(tmp_path, 1)
    precision = overrides[0].split("=")[1]
    assert str(state["policy"]) == {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[precision]
    assert np.all(np.isfinite(state["losses"]))
    for key in state_keys(state):
        assert np.all(np.isfinite(state[key])), key


# -- resume ----------------------------------------------------------------------------------------


def tensorboard_losses(path):
    """{step: loss} from one TensorBoard events file."""
    losses = {}
    for event in tf.compat.v1.train.summary_iterator(str(path)):
        for value in event.summary.value:
            if value.tag == "train/loss":
                losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def test_killed_run_resumes_exactly(hvd_launch, tiny_data, tmp_path):
    overrides = ["train.max_steps=14", "train.checkpoint_every_steps=4", "train.keep_checkpoints=10",
                 "run.log_every_steps=1"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    hvd_launch(train_argv(tiny_data, whole, *overrides), launcher="single")

    argv = [sys.executable, *train_argv(tiny_data, parts, *overrides)]
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = parts / "checkpoints" / "checkpoint"
    deadline = time.time() + 120
    while not (state.exists() and "ckpt-" in state.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    hvd_launch(train_argv(tiny_data, parts, *overrides) + ["--resume"], launcher="single")

    log = (parts / "train_log.txt").read_text()
    resumed_at = int(log.split("resumed from ")[1].split(" at step ")[1].split()[0])
    assert 4 <= resumed_at < 14
    expected = tensorboard_losses(sorted(glob.glob(str(whole / "tensorboard" / "events*")))[0])
    resumed = tensorboard_losses(sorted(glob.glob(str(parts / "tensorboard" / "events*")))[-1])
    assert sorted(expected) == list(range(1, 15))
    assert sorted(resumed) == list(range(resumed_at + 1, 15))
    for step, loss in resumed.items():
        assert loss == pytest.approx(expected[step], rel=1e-5), step
    ckpt_state = tf.train.get_checkpoint_state(str(parts / "checkpoints"))
    assert ckpt_state.model_checkpoint_path.endswith("ckpt-14")
    for prefix in ckpt_state.all_model_checkpoint_paths:  # every listed checkpoint reads back whole
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    a = tf.train.load_checkpoint(str(whole / "checkpoints" / "ckpt-14"))
    b = tf.train.load_checkpoint(str(parts / "checkpoints" / "ckpt-14"))
    names = [n for n in a.get_variable_to_shape_map() if "OBJECT_GRAPH" not in n and "save_counter" not in n]
    assert len(names) > 100
    for name in names:
        np.testing.assert_allclose(a.get_tensor(name), b.get_tensor(name), rtol=1e-4, atol=1e-6, err_msg=name)
    assert run_status(parts) == "aborted"  # stopped at max_steps: the target was not reached


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
    assert proc.returncode != 0
    assert f"train.backbone_weights='{tmp_path / 'absent'}': no checkpoint there" in proc.stdout


# -- evaluation schedule and target ----------------------------------------------------------------


EVERY_EPOCH = ["eval.epochs=1", "eval.every=1", "eval.every_after=1"]


def test_tiny_target_stops_after_the_first_evaluation(hvd_launch, tiny_data, tmp_path):
    # 2 ranks at 4 images: 6 steps per epoch; batch-norm statistics averaged, evaluation sharded.
    proc = hvd_launch(train_argv(tiny_data, tmp_path, "train.batch_size=4", "train.epochs=3",
                                 "eval.target_map=0.000001", *EVERY_EPOCH), np=2, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    events = mlperf_events(tmp_path)
    assert [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"] == [1]
    assert [e["metadata"]["epoch_num"] for e in events if e["key"] == "epoch_start"] == [1]
    assert run_status(tmp_path) == "success"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "success" and [r["epoch"] for r in metrics["epochs"]] == [1]
    assert metrics["epochs"][0]["map"] >= 0.000001
    lines = (tmp_path / "train_log.txt").read_text().splitlines()
    assert lines[0].startswith("epoch 1 steps 6 loss ") and " mAP " in lines[0]
    assert json.loads((tmp_path / "detections.json").read_text())  # the evaluation's detections
    assert json.loads((tmp_path / "config.json").read_text())["eval"]["target_map"] == 0.000001
    assert glob.glob(str(tmp_path / "tensorboard" / "events*"))


def test_unreachable_target_runs_to_the_last_epoch_and_fails(hvd_launch, tiny_data, tmp_path):
    proc = hvd_launch(train_argv(tiny_data, tmp_path, "train.epochs=2", "eval.target_map=1.0", *EVERY_EPOCH),
                      launcher="single", check=False)
    assert proc.returncode == 1, proc.stdout[-3000:]
    events = mlperf_events(tmp_path)
    assert [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"] == [1, 2]
    assert run_status(tmp_path) == "aborted"
    assert "target mAP 1.0 not reached in 2 epochs" in (tmp_path / "train_log.txt").read_text()
