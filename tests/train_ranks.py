"""Runs the real `ssd.train.make_train_step` for a few steps on generated data; saves every rank's state.

    horovodrun --gloo -np 2 python tests/train_ranks.py OUT --steps 3 --batch 2 [--same-images] [key=value ...]

Every rank builds the demo model from its own seed (7 + 100 x rank), so only the broadcast from
rank 0 makes them start equal (and rank 0 starts like a 1-rank run). Default: each rank trains on
its own images (identical weights at the end prove the broadcast and the averaged gradients).
--same-images: step i uses the global batch images[i] of size batch x ranks, and rank r takes its
slice r; batch norm is frozen (inference mode), so the forward pass of each image does not depend
on its batch-mates, and one rank at batch 2b must take the same steps as two ranks at batch b.
Overrides (e.g. train.precision=float16 train.xla=true) apply to the demo config. --loss-scale S:
float16's dynamic loss scale starts at S instead of 2^15.
Writes OUT/rank<r>.npz with the trainable variables (after, and `init` after the broadcast), the
optimizer variables, the momentum buffers (`grad`: after one step without weight decay, the averaged
gradient; ssd.optimizer) and the losses.
"""

import argparse
import dataclasses

import numpy as np

import ssd  # noqa: F401
import tensorflow as tf
import tf_keras

from ssd import config, distributed, schedule
from ssd.anchors import default_boxes
from ssd.model import build_model
from ssd.train import make_optimizer, make_train_step, set_precision


def generated_batch(step: int, size: int, num_boxes: int, num_classes: int, image_size: int):
    """Images [size,S,S,3] and targets ([size,n,4], [size,n]) from a generator seeded by `step`."""
    rng = np.random.default_rng(1000 + step)
    images = rng.normal(size=(size, image_size, image_size, 3)).astype(np.float32)
    loc = rng.normal(scale=0.5, size=(size, num_boxes, 4)).astype(np.float32)
    cls = np.where(rng.random((size, num_boxes)) < 0.01, rng.integers(1, num_classes, (size, num_boxes)), 0)
    return images, loc, cls.astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="per rank")
    parser.add_argument("--same-images", action="store_true")
    parser.add_argument("--loss-scale", type=float, default=0.0)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()

    world = distributed.init()
    cfg = config.load_config("demo", [f"train.batch_size={args.batch}",
                                      "train.warmup_steps=2", "train.base_lr=1e-4", "train.lr_reference_batch=1",
                                      *args.overrides])  # fixed LR rule: independent of the demo preset
    set_precision(cfg.train.precision)
    tf_keras.utils.set_random_seed(7 + 100 * world.rank)  # rank 0 starts like a 1-rank run
    model = build_model(cfg.model)
    if args.same_images:
        for layer in model.submodules:
            if isinstance(layer, tf_keras.layers.BatchNormalization):
                layer.trainable = False
    global_batch = args.batch * world.size
    lr_schedule = schedule.from_config(cfg.train, global_batch, steps_per_epoch=100)
    if args.loss_scale:  # make_optimizer's SGD, wrapped as make_optimizer wraps it but for the first scale
        sgd = make_optimizer(dataclasses.replace(cfg.train, precision="float32"), lr_schedule)
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(sgd, initial_scale=args.loss_scale)
    else:
        optimizer = make_optimizer(cfg.train, lr_schedule)
    optimizer.build(model.trainable_variables)
    distributed.broadcast(model.variables + list(optimizer.variables))
    initial = [v.numpy() for v in model.trainable_variables]
    train_step = make_train_step(model, optimizer, cfg, world.rank)
    n = len(default_boxes(cfg.model))
    losses = []
    for step in range(args.steps):
        if args.same_images:
            images, loc, cls = generated_batch(step, global_batch, n, cfg.model.num_classes, cfg.model.image_size)
            part = slice(world.rank * args.batch, (world.rank + 1) * args.batch)
            images, loc, cls = images[part], loc[part], cls[part]
        else:
            images, loc, cls = generated_batch(10 * step + world.rank, args.batch, n, cfg.model.num_classes,
                                               cfg.model.image_size)
        losses.append(float(train_step(tf.constant(images), tf.constant(loc), tf.constant(cls))))
    arrays = {f"var{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}
    arrays.update({f"opt{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
    arrays.update({f"init{i}": value for i, value in enumerate(initial)})
    sgd = getattr(optimizer, "inner_optimizer", optimizer)  # float16: inside the LossScaleOptimizer
    arrays.update({f"grad{i}": m.numpy() for i, m in enumerate(sgd.momentums)})
    np.savez(f"{args.out}/rank{world.rank}.npz", losses=np.array(losses), size=world.size,
             policy=tf_keras.mixed_precision.global_policy().name, **arrays)


if __name__ == "__main__":
    main()
