"""Kill-and-resume on 2 Horovod ranks: what a resumed run reproduces of the uninterrupted one.

One run goes uninterrupted to step 14; the same command is killed with SIGKILL (every rank, as a lost
node) after its mid-epoch checkpoint and continued with --resume. Tiny generated data (48 images,
global batch 16: 3 steps per epoch), the demo model, data.deterministic=true, train.seed=1.
"""

import glob
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

import ssd  # noqa: F401
import tensorflow as tf

from conftest import child_env
from test_train import run_status, tiny_data, train_argv  # noqa: F401  (tiny_data: fixture)

STEPS, EVERY = 14, 4  # checkpoints at steps 4, 8, 12 (mid-epoch: 3 steps per epoch), the last at 14


def scalars(run_dir, tag, events=-1):
    """{step: value} of `tag` in one TensorBoard events file of the run (default: the newest)."""
    path = sorted(glob.glob(str(run_dir / "tensorboard" / "events*")))[events]
    out = {}
    for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
            if value.tag == tag:
                out[event.step] = float(tf.make_ndarray(value.tensor))
    return out


def horovodrun(argv):
    return [str(Path(sys.executable).with_name("horovodrun")), "--gloo", "-np", "2", "-H", "localhost:2",
            sys.executable, *argv]


def rank_processes(run_dir):
    """The `python -m ssd.train` processes (the ranks) training into run_dir."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "ssd.train" in cmd and f"run.run_dir={run_dir}" in cmd and "horovodrun" not in " ".join(cmd[:2]):
            found.append(proc)
    return found


def kill_after_checkpoint(argv, run_dir, timeout=300):
    """Starts the 2-rank run and SIGKILLs both ranks as soon as its first checkpoint is complete."""
    launcher = subprocess.Popen(horovodrun(argv), env=child_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    state = run_dir / "checkpoints" / "checkpoint"
    deadline = time.time() + timeout
    try:
        while not (state.exists() and "ckpt-" in state.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        ranks = rank_processes(run_dir)
        assert launcher.poll() is None and len(ranks) == 2, "the run ended before it could be killed"
        for proc in ranks:
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(ranks, timeout=30)
        launcher.wait(timeout=60)  # horovodrun sees its ranks die and exits
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert not rank_processes(run_dir)


def test_killed_two_rank_run_resumes_bitwise(tiny_data, tmp_path):  # noqa: F811
    """The resumed run's per-step LR and loss and its final checkpoint (weights, batch-norm statistics,
    momentum, counters) equal the uninterrupted run's bit for bit."""
    overrides = [f"train.max_steps={STEPS}", f"train.checkpoint_every_steps={EVERY}", "train.keep_checkpoints=10",
                 "run.log_every_steps=1"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    subprocess.run(horovodrun(train_argv(tiny_data, whole, *overrides)), env=child_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    kill_after_checkpoint(train_argv(tiny_data, parts, *overrides), parts)
    subprocess.run(horovodrun(train_argv(tiny_data, parts, *overrides) + ["--resume"]), env=child_env(),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)

    log = (parts / "train_log.txt").read_text()
    resumed_at = int(log.split("resumed from ")[1].split(" at step ")[1].split()[0])
    assert resumed_at in (4, 8)  # mid-epoch: 3 steps per epoch
    loss, lr = scalars(whole, "train/loss"), scalars(whole, "train/learning_rate")
    before, after = scalars(parts, "train/loss", events=0), scalars(parts, "train/loss")
    after_lr = scalars(parts, "train/learning_rate")
    assert sorted(loss) == list(range(1, STEPS + 1))
    assert sorted(after) == sorted(after_lr) == list(range(resumed_at + 1, STEPS + 1))
    assert set(range(1, resumed_at + 1)) <= set(before)
    differ = {s: (loss[s], v) for s, v in {**before, **after}.items() if v != loss[s]}
    assert not differ, f"losses not bitwise equal (step: uninterrupted, killed/resumed): {differ}"
    assert all(after_lr[s] == lr[s] for s in after_lr)

    a = tf.train.load_checkpoint(str(whole / "checkpoints" / f"ckpt-{STEPS}"))
    b = tf.train.load_checkpoint(str(parts / "checkpoints" / f"ckpt-{STEPS}"))
    names = [n for n in a.get_variable_to_shape_map() if "OBJECT_GRAPH" not in n and "save_counter" not in n]
    assert len(names) > 100 and sorted(names) == sorted(n for n in b.get_variable_to_shape_map()
                                                         if "OBJECT_GRAPH" not in n and "save_counter" not in n)
    assert any("moving_mean" in n for n in names) and any(n.startswith("optimizer/_variables/") for n in names)
    differ = {n: float(np.abs(a.get_tensor(n) - b.get_tensor(n)).max()) for n in names
              if not np.array_equal(a.get_tensor(n), b.get_tensor(n))}
    assert not differ, f"final checkpoints differ (largest absolute difference): {differ}"
    counters = {k: int(b.get_tensor(f"{k}/.ATTRIBUTES/VARIABLE_VALUE")) for k in ("step", "epoch", "seed")}
    assert counters == {"step": STEPS, "epoch": STEPS // 3, "seed": 1}
    for prefix in tf.train.get_checkpoint_state(str(parts / "checkpoints")).all_model_checkpoint_paths:
        reader = tf.train.load_checkpoint(prefix)  # every listed checkpoint reads back whole
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    assert run_status(parts) == "aborted"  # stopped at max_steps: the target was not reached
