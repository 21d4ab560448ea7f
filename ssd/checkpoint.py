"""Training checkpoints: atomic saves, the last K kept, exact resume; and the backbone import.

A checkpoint directory is written by `tf.train.CheckpointManager`: each save writes its data and
index files completely before the `checkpoint` state file (the pointer to the latest) is replaced
atomically, so a process killed mid-save leaves the previous checkpoint as the latest. Only rank 0
writes; every rank reads (the directory is on a shared file system, or each node holds a copy).
"""

import os

import tensorflow as tf


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

    def save(self, step: int) -> str | None:
        """Writes checkpoint `ckpt-<step>` on rank 0 (others: no-op) and returns its prefix."""
        if self.rank != 0:
            return None
        return self.manager.save(checkpoint_number=step)

    def restore(self, prefix: str | None = None) -> str:
        """Restores `prefix` (default: the latest) into the tracked objects; returns the prefix.

        Every tracked variable must exist (e.g. optimizer slots built) and be found in the file.
        """
        prefix = prefix or self.latest
        if prefix is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}")
        self.checkpoint.restore(prefix).assert_existing_objects_matched()
        return prefix


def restore_backbone(backbone, path: str) -> str:
    """Loads backbone weights written as `tf.train.Checkpoint(backbone=...)` (ssd.import_weights).

    path: a checkpoint directory (its latest checkpoint is used) or a checkpoint prefix.
    Returns the prefix read. Raises FileNotFoundError naming the path when there is none, and
    an AssertionError when a backbone variable is missing from it.
    """
    prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(
            f"train.backbone_weights={path!r}: no checkpoint there; write one with "
            "`python -m ssd.import_weights --format torchvision ...`, or set train.from_scratch=true")
    status = tf.train.Checkpoint(backbone=backbone).read(prefix)
    status.assert_existing_objects_matched()
    return prefix
