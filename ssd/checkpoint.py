"""Checkpoints: atomic saves (optionally asynchronous), the last K kept, exact resume; model and backbone restore.

A checkpoint directory is written by `tf.train.CheckpointManager`: each save writes its data and
index files completely before the `checkpoint` state file (the pointer to the latest) is replaced
atomically, so a process killed mid-save leaves the previous checkpoint as the latest. Only rank 0
writes; every rank reads (the directory is on a shared file system, or each node holds a copy).

An asynchronous save (`save(step, wait=False)`) copies the variables (on the host) and returns;
TensorFlow's background thread writes the files and then replaces the state file, so the atomicity
above holds for it too. `restore_model` is the one loader of a whole model for evaluation, export and
`ssd.raw_outputs`.
"""

import os
import shutil
import tempfile

import tensorflow as tf

_ASYNC = tf.train.CheckpointOptions(experimental_enable_async_checkpoint=True)


class Checkpoints:
    """Saves and restores the named trackables (model, optimizer, counters) under `directory`.

    directory: the checkpoint folder (e.g. <run_dir>/checkpoints). keep: how many to keep.
    rank: this process's rank; only rank 0 writes. objects: what a checkpoint holds, e.g.
    model=, optimizer=, step=, epoch=, seed= (tf.Variables for counters).
    """

    def __init__(self, directory: str, keep: int, rank: int, **objects):
        self.directory = directory
        self.rank = rank
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        """The prefix of the newest complete checkpoint, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def save(self, step: int, wait: bool = True) -> str | None:
        """Writes checkpoint `ckpt-<step>` on rank 0 (others: no-op) and returns its prefix.

        wait=False: asynchronous; the variables are copied before this returns (later updates do
        not reach the file) and the files are written in the background (`wait()` joins).
        """
        if self.rank != 0:
            return None
        return self.manager.save(checkpoint_number=step, options=None if wait else _ASYNC)

    def wait(self) -> None:
        """Returns when no asynchronous save is in progress."""
        self.checkpoint.sync()

    def warm_up_async(self) -> None:
        """Makes later asynchronous saves cheap: TensorFlow's first one copies every variable and its
        second traces the copy function (10 s for the demo model on a loaded 2-core machine), so two
        writes to a scratch directory take that cost here, in the untimed initialisation (rank 0)."""
        if self.rank != 0:
            return
        scratch = tempfile.mkdtemp(prefix="ckpt_warm_up_")
        try:
            for i in range(2):
                self.checkpoint.write(os.path.join(scratch, f"warm_up-{i}"), options=_ASYNC)
            self.wait()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def restore(self, prefix: str | None = None) -> str:
        """Restores `prefix` (default: the latest) into the tracked objects; returns the prefix.

        Every tracked variable must exist (e.g. optimizer slots built) and be found in the file.
        """
        prefix = prefix or self.latest
        if prefix is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}")
        self.checkpoint.restore(prefix).assert_existing_objects_matched()
        return prefix


def _prefix(path: str) -> str | None:
    """The latest checkpoint of a directory, or `path` itself when it is a prefix; None when neither."""
    prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    return prefix if prefix and tf.io.gfile.exists(prefix + ".index") else None


def restore_model(path: str, cfg):
    """The Keras model of cfg.model with every weight read from a checkpoint of a whole model.

    path: a checkpoint directory (its latest checkpoint) or prefix, written as
    `tf.train.Checkpoint(model=...)` with or without optimizer and counters (the trainer's,
    `ssd.import_weights --format reference`); only the model is read, all of it. Raises
    FileNotFoundError naming the path when there is no checkpoint.
    """
    from ssd.model import build_model

    prefix = _prefix(path)
    if prefix is None:
        raise FileNotFoundError(f"{path}: no checkpoint there")
    model = build_model(cfg.model)
    tf.train.Checkpoint(model=model).read(prefix).assert_existing_objects_matched().expect_partial()
    return model


def restore_backbone(backbone, path: str) -> str:
    """Loads backbone weights written as `tf.train.Checkpoint(backbone=...)` (ssd.import_weights).

    path: a checkpoint directory (its latest checkpoint is used) or a checkpoint prefix.
    Returns the prefix read. Raises FileNotFoundError naming the path when there is none, and
    an AssertionError when a backbone variable is missing from it.
    """
    prefix = _prefix(path)
    if prefix is None:
        raise FileNotFoundError(
            f"train.backbone_weights={path!r}: no checkpoint there; write one with "
            "`python -m ssd.import_weights --format torchvision ...`, or set train.from_scratch=true")
    status = tf.train.Checkpoint(backbone=backbone).read(prefix)
    status.assert_existing_objects_matched()
    return prefix
