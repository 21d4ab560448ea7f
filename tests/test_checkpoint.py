"""Checkpoints: save/restore round trip with optimizer slots, keep-K, atomic under SIGKILL (synchronous
and asynchronous saves), asynchronous saves snapshot the variables, model and backbone restore."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf
import tf_keras

from ssd import checkpoint, config
from ssd.model import build_model
from ssd.optimizer import SGD


def _model_and_optimizer():
    model = build_model(config.load_config("demo").model)
    optimizer = SGD(0.1, momentum=0.9, weight_decay=1e-4)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_round_trip_restores_weights_slots_and_counters(tmp_path):
    model, optimizer = _model_and_optimizer()
    x = tf.random.stateless_uniform([2, 300, 300, 3], seed=(1, 2))
    with tf.GradientTape() as tape:
        loc, logits = model(x, training=True)
        loss = tf.reduce_mean(loc) + tf.reduce_mean(logits)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    step = tf.Variable(7, dtype=tf.int64)
    saver = checkpoint.Checkpoints(str(tmp_path), keep=2, rank=0, model=model, optimizer=optimizer, step=step)
    prefix = saver.save(7)
    assert prefix.endswith("ckpt-7") and saver.latest == prefix

    model2, optimizer2 = _model_and_optimizer()
    step2 = tf.Variable(0, dtype=tf.int64)
    reader = checkpoint.Checkpoints(str(tmp_path), keep=2, rank=1, model=model2, optimizer=optimizer2, step=step2)
    assert reader.restore() == prefix
    assert int(step2.numpy()) == 7 and int(optimizer2.iterations.numpy()) == 1
    for a, b in zip(model.variables + optimizer.variables, model2.variables + optimizer2.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    assert any(np.abs(m.numpy()).max() > 0 for m in optimizer2.momentums)


def test_only_rank0_writes_and_the_last_k_are_kept(tmp_path):
    v = tf.Variable(0.0)
    assert checkpoint.Checkpoints(str(tmp_path), keep=2, rank=1, v=v).save(1) is None
    assert not list(tmp_path.iterdir())
    saver = checkpoint.Checkpoints(str(tmp_path), keep=2, rank=0, v=v)
    for step in (1, 2, 3):
        v.assign(float(step))
        saver.save(step)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".index"))
    assert names == ["ckpt-2.index", "ckpt-3.index"]


def test_missing_checkpoint_errors_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        checkpoint.Checkpoints(str(tmp_path), keep=1, rank=0, v=tf.Variable(0.0)).restore()
    with pytest.raises(FileNotFoundError, match="from_scratch"):
        checkpoint.restore_backbone(tf_keras.Sequential(), str(tmp_path / "nowhere"))


_WRITER = """
import sys, threading, time
import ssd, tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management
from ssd import checkpoint

directory, mode = sys.argv[1], sys.argv[2]
replace_state = checkpoint_management.update_checkpoint_state_internal
moved_on = threading.Event()  # the main thread has assigned step 3's values


def pause_before_the_state_file(save_dir, **state):
    # tf.train.CheckpointManager calls this once a checkpoint's files are written, to make it the latest.
    if not state["model_checkpoint_path"].endswith("ckpt-1"):
        if mode == "async":
            moved_on.wait()
        print("paused before the state file names", state["model_checkpoint_path"], flush=True)
        time.sleep(3600)
    replace_state(save_dir, **state)


checkpoint_management.update_checkpoint_state_internal = pause_before_the_state_file
v = tf.Variable(tf.zeros([1024 * 1024]))
saver = checkpoint.Checkpoints(directory, keep=3, rank=0, v=v)
for step in (1, 2, 3):
    v.assign(tf.fill(v.shape, float(step)))
    if step == 3:
        moved_on.set()
    saver.save(step, wait=mode == "sync")
    if step == 1:
        saver.wait()  # one complete checkpoint exists
"""


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sigkill_mid_save_never_leaves_a_broken_latest(tmp_path, mode):
    """The writer is killed inside the save of ckpt-2, at a known point: its files are written and the
    state file (TensorFlow's pointer to the latest) is not yet replaced; asynchronously, the variable
    has meanwhile taken step 3's values. The latest is still ckpt-1, whole, and ckpt-2's files hold
    step 2's values. (A kill earlier in the save, while the data is written, leaves only files the
    state file does not name either.)"""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), mode], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()  # blocks until the writer pauses (or exits: then "")
        assert line == f"paused before the state file names {tmp_path / 'ckpt-2'}", line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (tmp_path / "ckpt-2.index").is_file()  # killed mid-save: the new files are there
    v = tf.Variable(tf.zeros([1024 * 1024]))
    prefix = checkpoint.Checkpoints(str(tmp_path), keep=3, rank=0, v=v).restore()
    assert prefix == str(tmp_path / "ckpt-1")
    values = v.numpy()
    assert values.min() == values.max() == 1.0  # the whole tensor, from that very step
    unnamed = tf.train.load_checkpoint(str(tmp_path / "ckpt-2")).get_tensor("v/.ATTRIBUTES/VARIABLE_VALUE")
    assert unnamed.min() == unnamed.max() == 2.0


def test_backbone_weights_round_trip(tmp_path):
    cfg = config.load_config("demo")
    source = build_model(cfg.model)
    tf.train.CheckpointManager(tf.train.Checkpoint(backbone=source.backbone), str(tmp_path), 1).save()
    target = build_model(cfg.model)
    prefix = checkpoint.restore_backbone(target.backbone, str(tmp_path))
    assert prefix == tf.train.latest_checkpoint(str(tmp_path))
    for a, b in zip(source.backbone.variables, target.backbone.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    head = [v for v in target.trainable_variables if not any(v is w for w in target.backbone.variables)]
    assert head  # the rest of the model keeps its own initialisation


def test_asynchronous_save_holds_the_values_of_its_step(tmp_path):
    model, optimizer = _model_and_optimizer()
    step = tf.Variable(1, dtype=tf.int64)
    saver = checkpoint.Checkpoints(str(tmp_path), keep=5, rank=0, model=model, optimizer=optimizer, step=step)
    saver.warm_up_async()
    assert not list(tmp_path.iterdir())  # the warm-up writes elsewhere
    before = [v.numpy().copy() for v in model.variables]
    saver.save(1, wait=False)
    for v in model.trainable_variables:  # training goes on while the file is written
        v.assign_add(tf.ones_like(v))
    step.assign(2)
    saver.save(2, wait=False)
    saver.wait()
    assert saver.latest.endswith("ckpt-2")
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt-1"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 1
    restored = checkpoint.restore_model(str(tmp_path / "ckpt-1"), config.load_config("demo"))
    for a, b in zip(before, restored.variables):
        np.testing.assert_array_equal(a, b.numpy())
    latest = checkpoint.restore_model(str(tmp_path), config.load_config("demo"))  # a directory: its latest
    for a, b in zip(model.variables, latest.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_restore_model_without_a_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no checkpoint there"):
        checkpoint.restore_model(str(tmp_path), config.load_config("demo"))
