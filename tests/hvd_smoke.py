"""A 2-process Horovod smoke step: broadcast, averaged gradients, SGD; each rank saves its weights.

    horovodrun --gloo -np 2 python tests/hvd_smoke.py OUT_DIR

Every rank starts from different random weights (seeded by rank) and sees different data, so
identical weights at the end need both the broadcast and the gradient averaging to work.
"""

import sys

import ssd  # noqa: F401  (selects Keras 2 for Horovod)
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf
import tf_keras


def main(out_dir: str) -> None:
    hvd.init()
    tf.random.set_seed(hvd.rank())
    model = tf_keras.Sequential([tf_keras.layers.Dense(4, activation="relu"), tf_keras.layers.Dense(1)])
    model.build((None, 3))
    before = [v.numpy() for v in model.variables]
    optimizer = tf_keras.optimizers.SGD(0.1, momentum=0.9)
    hvd.broadcast_variables(model.variables, root_rank=0)
    rng = np.random.default_rng(100 + hvd.rank())
    for _ in range(3):
        x = tf.constant(rng.normal(size=(8, 3)), tf.float32)
        y = tf.constant(rng.normal(size=(8, 1)), tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    np.savez(f"{out_dir}/rank{hvd.rank()}.npz", size=hvd.size(), mpi=hvd.mpi_enabled(),
             **{f"before{i}": b for i, b in enumerate(before)},
             **{f"after{i}": v.numpy() for i, v in enumerate(model.variables)})


if __name__ == "__main__":
    main(sys.argv[1])
