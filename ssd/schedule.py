"""The learning-rate schedule: the MLPerf SSD warmup rule, then x decay_factor at boundary epochs.

    lr(step) = base_lr x warmup(step) x decay_factor ** (number of boundaries <= step)
    warmup(step) = 1 - (warmup_steps - step) / (warmup_steps x 2**k)   for step < warmup_steps
                 = 1                                                     otherwise

with the integer warmup factor k >= 0 (train.warmup_factor): the reference's `lr_warmup`
(mlcommons/training retired_benchmarks/ssd-v1/ssd/train.py), lr = base - (wb - i) x base / (wb x 2**k).
`step` counts the updates already applied: the first update uses lr(0) = base_lr x (1 - 2**-k),
0 for k = 0. From step warmup_steps on this gives base_lr; the reference leaves the LR at its last
warmup value, base_lr x (1 - 1 / (warmup_steps x 2**k)), until the first decay boundary.
base_lr is the config's train.base_lr scaled by global batch / train.lr_reference_batch, and a
boundary epoch e is the step e x steps_per_epoch (the first step of epoch e + 1, epochs from 1).
"""

import tensorflow as tf
import tf_keras


class WarmupStepDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) above, a pure function of the step, computed in float64 and returned as float32."""

    def __init__(self, base_lr: float, warmup_steps: int, warmup_factor: int,
                 boundaries: list[int], decay_factor: float):
        if int(warmup_factor) != warmup_factor or warmup_factor < 0:
            raise ValueError(f"warmup_factor is the MLPerf integer k >= 0, got {warmup_factor!r}")
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = int(warmup_factor)
        self.boundaries = [int(b) for b in boundaries]
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float64)
        lr = tf.constant(self.base_lr, tf.float64)
        if self.warmup_steps > 0:
            ramp = 1.0 - (self.warmup_steps - step) / (self.warmup_steps * 2.0 ** self.warmup_factor)
            lr = tf.where(step < self.warmup_steps, lr * ramp, lr)
        for boundary in self.boundaries:
            lr = tf.where(step >= boundary, lr * self.decay_factor, lr)
        return tf.cast(lr, tf.float32)

    def get_config(self) -> dict:
        return {"base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "warmup_factor": self.warmup_factor, "boundaries": self.boundaries,
                "decay_factor": self.decay_factor}


def scaled_base_lr(train_cfg, global_batch: int) -> float:
    """train.base_lr x global_batch / train.lr_reference_batch (the MLPerf linear scaling rule)."""
    return train_cfg.base_lr * global_batch / train_cfg.lr_reference_batch


def from_config(train_cfg, global_batch: int, steps_per_epoch: int) -> WarmupStepDecay:
    """The schedule of a run: cfg.train at `global_batch` images per step, `steps_per_epoch` steps."""
    return WarmupStepDecay(
        base_lr=scaled_base_lr(train_cfg, global_batch),
        warmup_steps=train_cfg.warmup_steps,
        warmup_factor=train_cfg.warmup_factor,
        boundaries=[e * steps_per_epoch for e in train_cfg.lr_decay_epochs],
        decay_factor=train_cfg.lr_decay_factor,
    )
