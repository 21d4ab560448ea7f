"""Training: the SSD train step and the loop to the target mAP, on 1 or N Horovod processes.

    python -m ssd.train --config demo [key=value ...] [--resume]
    horovodrun -np 8 python -m ssd.train --config ssd_large train.batch_size=32
    mpirun -np 16 -H node1:8,node2:8 python -m ssd.train --config ssd_large

The run directory (run.run_dir) receives config.json, mlperf_log.txt, tensorboard/, checkpoints/,
train_log.txt (one line per epoch), metrics.json (per-epoch loss and mAP) and detections.json (the
last evaluation's detections). Exit status: 0 when an evaluation reached eval.target_map (or the run
stopped at train.max_steps), 1 when the last epoch ended without it, 2 on a non-finite loss.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import ssd  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
import tf_keras
import tqdm

from ssd import checkpoint, config, distributed, schedule
from ssd.anchors import default_boxes
from ssd.data import pipeline
from ssd.evaluate import evaluate
from ssd.loss import ssd_loss
from ssd.mllog import MLLogger
from ssd.model import build_model
from ssd.optimizer import SGD

EXIT_TARGET_MISSED = 1
EXIT_NON_FINITE = 2

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class NonFiniteLoss(RuntimeError):
    """The rank-averaged loss of a step is NaN or infinite (every rank raises it at the same step)."""


def set_precision(precision: str) -> None:
    """Sets the Keras policy for `precision` (float32 | bfloat16 | float16) before the model is built."""
    tf_keras.mixed_precision.set_global_policy(_POLICIES[precision])


def make_optimizer(train_cfg, global_batch: int, steps_per_epoch: int):
    """SGD (PyTorch semantics) on the run's LR schedule; wrapped for dynamic loss scaling in float16."""
    optimizer = SGD(schedule.from_config(train_cfg, global_batch, steps_per_epoch),
                    momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay,
                    exclude_bn_bias=train_cfg.weight_decay_exclude_bn_bias)
    if train_cfg.precision == "float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(model, optimizer, cfg, rank: int = 0):
    """The one training step (a tf.function) used by training and by benchmark.train_throughput.

    train_step(images [B,H,W,3] float32, loc_targets [B,n,4], cls_targets [B,n] int32) -> the loss
    averaged over ranks (float32 scalar, the same on every rank). Gradients are averaged over ranks
    by Horovod; with train.xla the forward and backward pass are compiled by XLA (the allreduce and
    the update stay outside). train.debug_nan_step > 0 makes rank 0's loss NaN at that update.
    """
    t = cfg.train
    variables = model.trainable_variables
    float16 = t.precision == "float16"

    def forward(images, loc_targets, cls_targets):
        loc, logits = model(images, training=True)
        return ssd_loss(loc, logits, loc_targets, cls_targets)[0]

    if t.xla:
        forward = tf.function(forward, jit_compile=True)

    @tf.function
    def train_step(images, loc_targets, cls_targets):
        with tf.GradientTape() as tape:
            loss = forward(images, loc_targets, cls_targets)
            if t.debug_nan_step > 0:
                # The same ops on every rank (Horovod matches collectives by op name); only the
                # constant differs.
                poisoned = tf.logical_and(tf.equal(optimizer.iterations + 1, t.debug_nan_step), rank == 0)
                loss = tf.where(poisoned, tf.constant(np.nan, tf.float32), loss)
            scaled = optimizer.get_scaled_loss(loss) if float16 else loss
        tape = distributed.gradient_tape(tape, fp16_compression=t.fp16_allreduce)
        grads = tape.gradient(scaled, variables)
        if float16:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, variables))
        return distributed.allreduce_mean(loss)

    return train_step


def _resolve_seed(train_cfg) -> int:
    """train.seed, or (for -1) a fresh seed drawn on rank 0 and shared with every rank."""
    seed = train_cfg.seed if train_cfg.seed >= 0 else int.from_bytes(os.urandom(4), "little") % 2**31
    return int(distributed.broadcast_object(seed, name="seed"))


def _write_json(path: str, data) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


class _Reporter:
    """Step losses in, progress out: the finiteness check on every rank; bar, TensorBoard, logs on rank 0.

    A step's loss is read one step late (after the next step is dispatched), so reading it does not
    stall the device; `flush` reads the pending one at once (epoch end, before a checkpoint).
    """

    def __init__(self, cfg, world, run_dir: str, lr_schedule, global_batch: int, checkpoints):
        self.cfg = cfg
        self.lr_schedule, self.global_batch, self.checkpoints = lr_schedule, global_batch, checkpoints
        self.rank0 = world.rank == 0
        self.log_every = max(1, cfg.run.log_every_steps)
        self.pending = None  # (step, loss tensor) not yet read
        self.bar = None
        self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard")) if self.rank0 else None
        self.train_log = os.path.join(run_dir, "train_log.txt")
        self.metrics_path = os.path.join(run_dir, "metrics.json")
        self.metrics = {"epochs": []}
        if self.rank0 and os.path.exists(self.metrics_path):
            with open(self.metrics_path) as f:
                self.metrics = json.load(f)

    def start_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        """A new epoch (1-based) starting after update `step`."""
        self.epoch, self.epoch_loss, self.epoch_steps = epoch, 0.0, 0
        self.epoch_first = (epoch - 1) * steps_per_epoch  # the step before the epoch's first
        self.epoch_start = self.mark_time = time.perf_counter()
        self.mark_step = step
        if self.rank0 and self.cfg.run.progress_bar:
            self.bar = tqdm.tqdm(total=steps_per_epoch, initial=step - self.epoch_first, desc=f"epoch {epoch}",
                                 unit="step", dynamic_ncols=True, leave=False)

    def step(self, step: int, loss) -> None:
        """Records the loss tensor of update `step` (1-based) and reads the previous one."""
        self.flush()
        self.pending = (step, loss)

    def flush(self) -> None:
        if self.pending is None:
            return
        step, loss = self.pending
        self.pending = None
        value = float(loss.numpy())
        if not np.isfinite(value):
            raise NonFiniteLoss(f"non-finite loss ({value}) at step {step} (epoch {self.epoch}); "
                                f"last good checkpoint: {self.checkpoints.latest or 'none'}")
        self.epoch_loss += value
        self.epoch_steps += 1
        if step % self.log_every == 0 and self.rank0:
            now = time.perf_counter()
            images_per_s = (step - self.mark_step) * self.global_batch / max(now - self.mark_time, 1e-9)
            self.mark_time, self.mark_step = now, step
            lr = float(self.lr_schedule(step - 1))
            with self.writer.as_default(step=step):
                tf.summary.scalar("train/loss", value)
                tf.summary.scalar("train/learning_rate", lr)
                tf.summary.scalar("train/images_per_s", images_per_s)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.3g}", img_s=f"{images_per_s:.1f}")
                self.bar.update(step - self.epoch_first - self.bar.n)

    def end_steps(self) -> None:
        """The epoch's training steps are done: reads the last loss and stops the epoch's clock."""
        self.flush()
        self.epoch_seconds = time.perf_counter() - self.epoch_start
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def end_epoch(self, step: int, map_value: float | None) -> None:
        """Writes the epoch's line to train_log.txt, metrics.json and TensorBoard (rank 0)."""
        if not self.rank0:
            return
        seconds = self.epoch_seconds
        row = {"epoch": self.epoch, "steps": step, "loss": self.epoch_loss / max(self.epoch_steps, 1),
               "lr": float(self.lr_schedule(max(step - 1, 0))),
               "images_per_s": self.epoch_steps * self.global_batch / max(seconds, 1e-9)}
        if map_value is not None:
            row["map"] = map_value
        self.metrics["epochs"] = [r for r in self.metrics["epochs"] if r["epoch"] < self.epoch] + [row]
        _write_json(self.metrics_path, self.metrics)
        fields = [f"epoch {self.epoch}", f"steps {step}", f"loss {row['loss']:.4f}", f"lr {row['lr']:.6g}",
                  f"images/s {row['images_per_s']:.1f}"]
        if map_value is not None:
            fields.append(f"mAP {map_value:.4f}")
        self.line(" ".join(fields))
        with self.writer.as_default(step=step):
            tf.summary.scalar("epoch/loss", row["loss"])
            if map_value is not None:
                tf.summary.scalar("eval/mAP", map_value)
        self.writer.flush()

    def line(self, text: str) -> None:
        """Appends `text` to train_log.txt and prints it (rank 0)."""
        if not self.rank0:
            return
        with open(self.train_log, "a") as f:
            f.write(text + "\n")
        print(text, flush=True)

    def finish(self, status: str) -> None:
        if self.rank0:
            self.metrics["status"] = status
            _write_json(self.metrics_path, self.metrics)
            self.writer.close()


def train(cfg: config.Config, resume: bool = False) -> int:
    """Trains to cfg.eval.target_map; returns the exit status (0 reached, 1 missed, 2 non-finite)."""
    world = distributed.init()
    run_dir = cfg.run.run_dir
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    t = cfg.train
    if not resume and tf.train.latest_checkpoint(ckpt_dir):
        raise SystemExit(f"{ckpt_dir} already holds checkpoints: pass --resume to continue that run, "
                         "or set run.run_dir to a new directory")
    mll = MLLogger(os.path.join(run_dir, "mlperf_log.txt"), world.rank)
    distributed.on_termination(mll.abort_run)  # a rank ended by its launcher still logs run_stop
    mll.cache_clear()
    with mll.block("init"):
        global_batch = t.batch_size * world.size
        train_manifest = pipeline.read_manifest(os.path.join(cfg.data.data_dir, "train"))
        num_train = train_manifest["num_records"]
        eval_epochs = cfg.eval_epochs()
        num_val = pipeline.read_manifest(os.path.join(cfg.data.data_dir, "val"))["num_records"] if eval_epochs else 0
        steps_per_epoch = pipeline.steps_per_epoch(num_train, global_batch)
        if steps_per_epoch < 1:
            raise SystemExit(f"{cfg.data.data_dir}/train: {num_train} records are less than one global batch "
                             f"({global_batch})")
        seed = _resolve_seed(t)
        tf_keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow: the same seed, the same init
        set_precision(t.precision)
        anchors = default_boxes(cfg.model)
        model = build_model(cfg.model)
        optimizer = make_optimizer(t, global_batch, steps_per_epoch)
        optimizer.build(model.trainable_variables)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")  # updates done
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # epochs done
        seed_var = tf.Variable(seed, dtype=tf.int64, trainable=False, name="seed")
        ckpts = checkpoint.Checkpoints(ckpt_dir, t.keep_checkpoints, world.rank, model=model, optimizer=optimizer,
                                       step=step_var, epoch=epoch_var, seed=seed_var)
        if resume:
            restored = ckpts.restore()
            seed = int(seed_var.numpy())
        elif not t.from_scratch:
            if not t.backbone_weights:
                raise SystemExit("train.backbone_weights is empty: import the torchvision ResNet34 weights "
                                 "(python -m ssd.import_weights) or set train.from_scratch=true")
            checkpoint.restore_backbone(model.backbone, t.backbone_weights)
        distributed.broadcast(model.variables + list(optimizer.variables))
        train_step = make_train_step(model, optimizer, cfg, world.rank)
        num_shards = len(train_manifest["shards"])
        shards = {e: pipeline.train_shards(num_shards, world.rank, world.size, seed, e)
                  for e in range(1, t.epochs + 1)}
        print(f"{distributed.describe(world)}: train shards (of {num_shards}) by epoch {shards}", flush=True)
        if world.rank == 0:
            config.write_config(cfg, run_dir)
            config.write_config(cfg, ckpt_dir)
        mll.submission_info(cfg)
        mll.hyperparameters(cfg, seed=seed, global_batch=global_batch, train_samples=num_train,
                            eval_samples=num_val)

    lr_schedule = schedule.from_config(t, global_batch, steps_per_epoch)
    report = _Reporter(cfg, world, run_dir, lr_schedule, global_batch, ckpts)
    step = int(step_var.numpy())
    if resume:
        report.line(f"resumed from {restored} at step {step} (epoch {step // steps_per_epoch + 1})")
    status, code = "aborted", EXIT_TARGET_MISSED
    try:
        with mll.run() as run:
            code = _loop(cfg, world, model, anchors, train_step, ckpts, report, mll, run, seed,
                         steps_per_epoch, step, step_var, epoch_var, eval_epochs)
            status = "success" if run.succeeded else "aborted"
    except NonFiniteLoss as err:
        report.line(f"aborted: {err}")
        print(f"rank {world.rank}: {err}", file=sys.stderr, flush=True)
        distributed.barrier()  # every rank has reported before the launcher sees the first exit
        code = EXIT_NON_FINITE
    report.finish(status)
    mll.close()
    print(f"{distributed.describe(world)}: final weights {distributed.checksum(model.variables)}", flush=True)
    print("DEBUG", world.rank, distributed.checksum(model.trainable_variables), distributed.checksum(model.non_trainable_variables), [(v.name, distributed.checksum([v])) for v in model.variables], flush=True)
    return code


def _loop(cfg, world, model, anchors, train_step, ckpts, report, mll, run, seed, steps_per_epoch, step,
          step_var, epoch_var, eval_epochs) -> int:
    """The epochs from `step` on; returns the exit status. Raises NonFiniteLoss on every rank alike."""
    t = cfg.train

    def save(step_now: int, epochs_done: int) -> None:
        step_var.assign(step_now)
        epoch_var.assign(epochs_done)
        ckpts.save(step_now)

    for epoch in range(step // steps_per_epoch + 1, t.epochs + 1):
        done_in_epoch = step - (epoch - 1) * steps_per_epoch  # > 0 only when resuming mid-epoch
        todo = steps_per_epoch - done_in_epoch
        stop_early = False
        with mll.epoch(epoch):
            report.start_epoch(epoch, step, steps_per_epoch)
            data = pipeline.train_dataset(cfg, anchors, world.rank, world.size, seed, epoch)
            for images, (loc_targets, cls_targets) in data.skip(done_in_epoch).take(todo):
                loss = train_step(images, loc_targets, cls_targets)
                step += 1
                report.step(step, loss)
                stop_early = 0 < t.max_steps <= step
                if stop_early:
                    break
                if t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0 and step % steps_per_epoch:
                    report.flush()  # never checkpoint a non-finite state
                    save(step, epoch - 1)
            report.end_steps()
            if not stop_early and step != epoch * steps_per_epoch:
                done = step - (epoch - 1) * steps_per_epoch
                raise RuntimeError(f"rank {world.rank}: the input pipeline ended after {done} of {steps_per_epoch} "
                                   f"steps of epoch {epoch}")
            if world.size > 1:
                # Batch-norm moving statistics are per rank: average them so every rank evaluates
                # and checkpoints the same model.
                distributed.average(model.non_trainable_variables)
            print("DEBUGE", world.rank, epoch, step, distributed.checksum(model.trainable_variables), distributed.checksum(model.non_trainable_variables), flush=True)
        map_value = None
        if epoch in eval_epochs and not stop_early:
            with mll.eval(epoch):
                result = evaluate(model, cfg, anchors, world.rank, world.size,
                                  out_json=os.path.join(cfg.run.run_dir, "detections.json"))
            map_value = float(result["map"])
            print("DEBUGV", world.rank, epoch, step, distributed.checksum(model.trainable_variables), distributed.checksum(model.non_trainable_variables), flush=True)
            mll.eval_accuracy(map_value, epoch)
        save(step, epoch if not stop_early else epoch - 1)
        report.end_epoch(step, map_value)
        if map_value is not None and map_value >= cfg.eval.target_map:
            report.line(f"target mAP {cfg.eval.target_map} reached after epoch {epoch}: mAP {map_value:.4f}")
            run.success()
            return 0
        if stop_early:
            report.line(f"stopped at train.max_steps={t.max_steps} (step {step}, epoch {epoch})")
            return 0
    report.line(f"target mAP {cfg.eval.target_map} not reached in {t.epochs} epochs")
    return EXIT_TARGET_MISSED


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssd.train", description=__doc__.splitlines()[0])
    config.add_config_args(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.run_dir from its latest checkpoint")
    args = parser.parse_args(argv)
    sys.exit(train(config.config_from_args(args), resume=args.resume))


if __name__ == "__main__":
    main()
