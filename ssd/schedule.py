"""The learning-rate schedule of the MLPerf SSD reference: its warmup rule, then x decay_factor at boundary epochs.

    lr(step) = base x decay_factor ** (number of boundaries <= step), and while step < ramp_end
    lr(step) - (warmup_steps - min(step, warmup_steps - 1)) x lr(step) / (warmup_steps x 2**k)

k = train.warmup_factor, ramp_end = the first boundary >= warmup_steps (none: never). This is the
reference (mlcommons/training retired_benchmarks/ssd-v1/ssd/train.py): `lr_warmup` sets the rate
only for iterations below warmup_steps, so its last warmup value lr x (1 - 1 / (warmup_steps x 2**k))
stays in force until the next decay sets the decayed base; a decay inside the warmup becomes the
ramp's base. `step` counts the updates already applied (the first uses base x (1 - 2**-k)).
Boundary epoch e is step e x steps_per_epoch, the first step of epoch e + 1.
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
        for boundary in self.boundaries:
            lr = tf.where(step >= boundary, lr * self.decay_factor, lr)
        wb = self.warmup_steps
        if wb > 0:
            # The reference's expression, so the float64 rounding is its own too.
            ramped = lr - (wb - tf.minimum(step, wb - 1)) * (lr / (wb * 2 ** self.warmup_factor))
            ramp_end = min([b for b in self.boundaries if b >= wb], default=None)
            lr = ramped if ramp_end is None else tf.where(step < ramp_end, ramped, lr)
        return tf.cast(lr, tf.float32)

    def get_config(self) -> dict:
        return {"base_lr": self.base_lr, "warmup_steps": self.warmup_steps,
                "warmup_factor": self.warmup_factor, "boundaries": self.boundaries,
                "decay_factor": self.decay_factor}


def scaled_base_lr(train_cfg, global_batch: int) -> float:
    """train.base_lr x (global_batch / train.lr_reference_batch): the MLPerf linear scaling rule, in the
    reference's order of operations (train.py: args.lr * (global_batch_size / 32))."""
    return train_cfg.base_lr * (global_batch / train_cfg.lr_reference_batch)


def from_config(train_cfg, global_batch: int, steps_per_epoch: int) -> WarmupStepDecay:
    """The schedule of a run: cfg.train at `global_batch` images per step, `steps_per_epoch` steps."""
    return WarmupStepDecay(
        base_lr=scaled_base_lr(train_cfg, global_batch),
        warmup_steps=train_cfg.warmup_steps,
        warmup_factor=train_cfg.warmup_factor,
        boundaries=[e * steps_per_epoch for e in train_cfg.lr_decay_epochs],
        decay_factor=train_cfg.lr_decay_factor,
    )
