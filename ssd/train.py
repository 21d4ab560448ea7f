"""Training: the SSD train step and the loop to the target mAP, on 1 or N Horovod processes.

    python -m ssd.train --config demo [key=value ...] [--resume]
    horovodrun -np 8 python -m ssd.train --config ssd_large train.batch_size=32
    mpirun -np 16 -H node1:8,node2:8 python -m ssd.train --config ssd_large

The run, as the MLPerf reference splits it (`train_one_epoch`, `evaluate`):

    state = setup(cfg, resume)            # untimed init: model, optimizer, data, traced functions, scorer
    run_start
    for each epoch:
        train_one_epoch(state, epoch)     # the steps; a pending score is looked for every few steps
        evaluate_and_decide(state, epoch) # inference; the score now, or in the background scorer
    run_stop                              # at the first score >= target (never before a pending one)
    timing.json, the final checkpoint

With eval.async_scoring (the default) rank 0's background scorer (ssd.scorer) scores an evaluation
while every rank trains the next epoch; every eval.poll_every_steps steps rank 0 broadcasts whether
the score is known, so every rank learns it at the same step, and a score >= eval.target_map stops
every rank there. A score still pending at the end of the next epoch (or at the end of the run) is
waited for. With eval.async_scoring=false rank 0 scores before training goes on.

The run directory (run.run_dir) receives config.json, mlperf_log.txt, tensorboard/, checkpoints/,
train_log.txt (one line per epoch), metrics.json (per-epoch loss and mAP), timing.json (where
run_stop - run_start went) and detections.json (the last evaluation's detections). Exit status: 0
when an evaluation reached eval.target_map (or the run stopped at train.max_steps), 1 when the last
epoch ended without it, 2 on a non-finite loss, 3 when the background scorer failed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

import tensorflow as tf
import tf_keras
import tqdm

from ssd import checkpoint, cli, coco_eval, config, distributed, quiet_stderr, schedule
from ssd.anchors import default_boxes
from ssd.data import pipeline
from ssd.data.manifest import read_manifest
from ssd.evaluate import Evaluator, detector
from ssd.jsonfile import write_json
from ssd.loss import ssd_loss
from ssd.mllog import MLLogger
from ssd.model import build_model
from ssd.optimizer import SGD
from ssd.scorer import Scorer, ScorerFailed
from ssd.timing import Timing, format_lines

EXIT_TARGET_MISSED = 1
EXIT_NON_FINITE = 2
EXIT_SCORER_FAILED = 3

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class SetupError(RuntimeError):
    """The run cannot start (its run directory, data or weights); `main` prints it in one line."""


class NonFiniteLoss(RuntimeError):
    """The rank-averaged loss of a step is NaN or infinite (every rank raises it at the same step)."""


def set_precision(precision: str) -> None:
    """Sets the Keras policy for `precision` (float32 | bfloat16 | float16) before the model is built."""
    tf_keras.mixed_precision.set_global_policy(_POLICIES[precision])


def make_optimizer(train_cfg, lr_schedule):
    """SGD (PyTorch semantics) on `lr_schedule` (ssd.schedule.from_config); wrapped for dynamic loss
    scaling in float16."""
    optimizer = SGD(lr_schedule, momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay,
                    exclude_bn_bias=train_cfg.weight_decay_exclude_bn_bias)
    if train_cfg.precision == "float16":
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(model, optimizer, cfg, rank: int = 0):
    """The one training step (a tf.function) used by training and by benchmark.train_throughput.

    train_step(images [B,H,W,3] float32, loc_targets [B,n,4], cls_targets [B,n] int32) -> the loss
    averaged over ranks (float32 scalar, the same on every rank). Gradients are averaged over ranks
    by Horovod; with train.xla the forward and backward pass are compiled by XLA (the allreduce
    stays outside; the update is always compiled, ssd.optimizer). train.debug_nan_step > 0 makes
    rank 0's loss NaN at that update.
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


class _Reporter:
    """Progress out, on rank 0 only: the progress bar, TensorBoard, train_log.txt, metrics.json.

    An evaluated epoch's row waits for its mAP (`end_epoch(..., evaluated=True)`, then
    `epoch_map`), so each train_log.txt line is whole and the lines stay in epoch order.
    """

    def __init__(self, cfg, rank: int, lr_schedule, global_batch: int, steps_per_epoch: int):
        self.cfg, self.rank0 = cfg, rank == 0
        self.lr_schedule, self.global_batch, self.steps_per_epoch = lr_schedule, global_batch, steps_per_epoch
        self.log_every = max(1, cfg.run.log_every_steps)
        self.bar = None
        self.waiting = None  # the row of an evaluated epoch whose mAP is not known yet
        run_dir = cfg.run.run_dir
        self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard")) if self.rank0 else None
        self.train_log = os.path.join(run_dir, "train_log.txt")
        self.metrics_path = os.path.join(run_dir, "metrics.json")
        self.metrics = {"epochs": []}
        if self.rank0 and os.path.exists(self.metrics_path):
            with open(self.metrics_path) as f:
                self.metrics = json.load(f)

    def start_epoch(self, epoch: int, step: int) -> None:
        """A new epoch (1-based) starting after update `step`."""
        self.epoch, self.epoch_loss, self.epoch_steps = epoch, 0.0, 0
        self.epoch_first = (epoch - 1) * self.steps_per_epoch  # the step before the epoch's first
        self.epoch_start = self.mark_time = time.perf_counter()
        self.mark_step = step
        if self.rank0 and self.cfg.run.progress_bar:
            self.bar = tqdm.tqdm(total=self.steps_per_epoch, initial=step - self.epoch_first, desc=f"epoch {epoch}",
                                 unit="step", dynamic_ncols=True, leave=False)

    def step(self, step: int, loss: float) -> None:
        """The (finite) loss of update `step` (1-based)."""
        self.epoch_loss += loss
        self.epoch_steps += 1
        if step % self.log_every or not self.rank0:
            return
        now = time.perf_counter()
        images_per_s = (step - self.mark_step) * self.global_batch / max(now - self.mark_time, 1e-9)
        self.mark_time, self.mark_step = now, step
        lr = float(self.lr_schedule(step - 1))
        with self.writer.as_default(step=step):
            tf.summary.scalar("train/loss", loss)
            tf.summary.scalar("train/learning_rate", lr)
            tf.summary.scalar("train/images_per_s", images_per_s)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", img_s=f"{images_per_s:.1f}")
            self.bar.update(step - self.epoch_first - self.bar.n)

    def end_steps(self) -> None:
        """The epoch's training steps are done: stops the epoch's clock."""
        self.epoch_seconds = time.perf_counter() - self.epoch_start
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def end_epoch(self, step: int, evaluated: bool) -> None:
        """The epoch's row; written now, or with its mAP (`epoch_map`) when the epoch is evaluated."""
        row = {"epoch": self.epoch, "steps": step, "loss": self.epoch_loss / max(self.epoch_steps, 1),
               "lr": float(self.lr_schedule(max(step - 1, 0))),
               "images_per_s": self.epoch_steps * self.global_batch / max(self.epoch_seconds, 1e-9)}
        if evaluated:
            self.waiting = row
        else:
            self._write_row(row)

    def epoch_map(self, epoch: int, map_value: float) -> None:
        """The mAP of the evaluation after `epoch`: completes and writes that epoch's row."""
        row, self.waiting = self.waiting, None
        if row is None or row["epoch"] != epoch:
            raise RuntimeError(f"reporter: no row of epoch {epoch} waits for its mAP")
        self._write_row(dict(row, map=map_value))

    def _write_row(self, row: dict) -> None:
        if not self.rank0:
            return
        self.metrics["epochs"] = [r for r in self.metrics["epochs"] if r["epoch"] < row["epoch"]] + [row]
        write_json(self.metrics_path, self.metrics)
        fields = [f"epoch {row['epoch']}", f"steps {row['steps']}", f"loss {row['loss']:.4f}", f"lr {row['lr']:.6g}",
                  f"images/s {row['images_per_s']:.1f}"] + ([f"mAP {row['map']:.4f}"] if "map" in row else [])
        self.line(" ".join(fields))
        with self.writer.as_default(step=row["steps"]):
            tf.summary.scalar("epoch/loss", row["loss"])
            if "map" in row:
                tf.summary.scalar("eval/mAP", row["map"])
        self.writer.flush()

    def line(self, text: str, console: bool = True) -> None:
        """Appends `text` to train_log.txt and prints it (rank 0)."""
        if not self.rank0:
            return
        with open(self.train_log, "a") as f:
            f.write(text + "\n")
        if console:
            print(text, flush=True)

    def finish(self, status: str) -> None:
        """Writes a row still waiting (its evaluation was never scored) and the run's status."""
        if self.waiting is not None:
            self._write_row(self.waiting)
            self.waiting = None
        if self.rank0:
            self.metrics["status"] = status
            write_json(self.metrics_path, self.metrics)
            self.writer.close()


@dataclasses.dataclass
class TrainState:
    """What the loop reads and changes, built once by `setup` (every rank holds its own)."""

    cfg: config.Config
    world: distributed.World
    mll: MLLogger
    model: tf_keras.Model
    optimizer: object
    lr_schedule: schedule.WarmupStepDecay
    train_step: object  # make_train_step's tf.function
    ckpts: checkpoint.Checkpoints
    counters: dict[str, tf.Variable]  # step, epoch, seed: checkpointed with the model
    report: _Reporter
    anchors: np.ndarray  # [n, 4] default boxes, cxcywh
    seed: int
    global_batch: int
    steps_per_epoch: int
    eval_epochs: frozenset[int]
    num_train: int
    num_val: int
    step: int = 0  # updates done
    evaluator: Evaluator | None = None  # None when the run never evaluates
    scorer: Scorer | None = None  # the background scorer (rank 0, eval.async_scoring)
    pending: int | None = None  # the epoch whose evaluation is being scored in the background (every rank)
    saved_step: int = -1  # the step of the last checkpoint written
    timing: Timing = dataclasses.field(default_factory=Timing)


# -- initialisation (untimed) -----------------------------------------------------------------------


def setup(cfg: config.Config, resume: bool = False) -> TrainState:
    """Everything before run_start, inside init_start/init_stop: the model and optimizer (restored
    with --resume, else the backbone weights), the broadcast from rank 0, the train step and the
    detector traced once, the background scorer started and its ground truth loaded."""
    world = distributed.init()
    ckpt_dir = os.path.join(cfg.run.run_dir, "checkpoints")
    if not resume and tf.train.latest_checkpoint(ckpt_dir):
        raise SetupError(f"{ckpt_dir} already holds checkpoints: pass --resume to continue that run, "
                         "or set run.run_dir to a new directory")
    mll = MLLogger(os.path.join(cfg.run.run_dir, "mlperf_log.txt"), world.rank, stdout=cfg.run.echo_mllog)
    distributed.on_termination(mll.abort_run)  # a rank ended by its launcher still logs run_stop
    mll.cache_clear(cfg.run.cache_cleared)
    with mll.block("init"):
        state = _build(cfg, world, mll)
        restored = _load_weights(state, resume)
        num_shards = len(read_manifest(os.path.join(cfg.data.data_dir, "train"))["shards"])
        shards = {e: pipeline.train_shards(num_shards, world.rank, world.size, state.seed, e)
                  for e in range(1, cfg.train.epochs + 1)}
        print(f"{distributed.describe(world)}: train shards (of {num_shards}) by epoch {shards}", flush=True)
        if state.eval_epochs:
            _start_evaluation(state)
        _trace(state)
        if cfg.train.checkpoint_every_steps or cfg.train.checkpoint_every_epochs:
            state.ckpts.warm_up_async()
        if state.scorer is not None:
            try:
                state.scorer.ready()
            except ScorerFailed as err:  # e.g. val/instances.json unreadable
                raise SetupError(str(err)) from None
        if world.rank == 0:
            config.write_config(cfg, cfg.run.run_dir)
            config.write_config(cfg, ckpt_dir)
        mll.submission_info(cfg)
        mll.hyperparameters(cfg, seed=state.seed, global_batch=state.global_batch, train_samples=state.num_train,
                            eval_samples=state.num_val)
    if restored:
        state.report.line(f"resumed from {restored} at step {state.step} "
                          f"(epoch {state.step // state.steps_per_epoch + 1})")
    return state


def _build(cfg: config.Config, world: distributed.World, mll: MLLogger) -> TrainState:
    """The state with a freshly initialised model: the run's sizes, seed, schedule, optimizer, step."""
    t = cfg.train
    global_batch = t.batch_size * world.size
    num_train = read_manifest(os.path.join(cfg.data.data_dir, "train"))["num_records"]
    eval_epochs = frozenset(cfg.eval_epochs())
    num_val = read_manifest(os.path.join(cfg.data.data_dir, "val"))["num_records"] if eval_epochs else 0
    steps_per_epoch = pipeline.steps_per_epoch(num_train, global_batch)
    if steps_per_epoch < 1:
        raise SetupError(f"{cfg.data.data_dir}/train: {num_train} records are less than one global batch "
                         f"({global_batch})")
    # train.seed, or (for -1) a fresh seed drawn on rank 0 and shared with every rank.
    seed = t.seed if t.seed >= 0 else int.from_bytes(os.urandom(4), "little") % 2**31
    seed = int(distributed.broadcast_object(seed, name="seed"))
    tf_keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow: the same seed, the same init
    set_precision(t.precision)
    model = build_model(cfg.model)
    lr_schedule = schedule.from_config(t, global_batch, steps_per_epoch)
    optimizer = make_optimizer(t, lr_schedule)
    optimizer.build(model.trainable_variables)
    counters = {"step": tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),  # updates done
                "epoch": tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),  # epochs done
                "seed": tf.Variable(seed, dtype=tf.int64, trainable=False, name="seed")}
    ckpts = checkpoint.Checkpoints(os.path.join(cfg.run.run_dir, "checkpoints"), t.keep_checkpoints, world.rank,
                                   model=model, optimizer=optimizer, **counters)
    report = _Reporter(cfg, world.rank, lr_schedule, global_batch, steps_per_epoch)
    return TrainState(cfg=cfg, world=world, mll=mll, model=model, optimizer=optimizer, lr_schedule=lr_schedule,
                      train_step=make_train_step(model, optimizer, cfg, world.rank), ckpts=ckpts, counters=counters,
                      report=report, anchors=default_boxes(cfg.model), seed=seed, global_batch=global_batch,
                      steps_per_epoch=steps_per_epoch, eval_epochs=eval_epochs, num_train=num_train,
                      num_val=num_val)


def _load_weights(state: TrainState, resume: bool) -> str | None:
    """Restores the latest checkpoint (resume; returns its prefix) or the backbone weights, then
    sets every rank to rank 0's variables."""
    t = state.cfg.train
    restored = None
    if resume:
        restored = state.ckpts.restore()
        state.seed = int(state.counters["seed"].numpy())
        state.step = int(state.counters["step"].numpy())
        state.saved_step = state.step
    elif not t.from_scratch:
        if not t.backbone_weights:
            raise SetupError("train.backbone_weights is empty: import the torchvision ResNet34 weights "
                             "(python -m ssd.import_weights) or set train.from_scratch=true")
        try:
            checkpoint.restore_backbone(state.model.backbone, t.backbone_weights)
        except FileNotFoundError as err:
            raise SetupError(str(err)) from None
    distributed.broadcast(state.model.variables + list(state.optimizer.variables))
    return restored


def _start_evaluation(state: TrainState) -> None:
    """The evaluator (the detector, this rank's val batches) and, on rank 0 with eval.async_scoring,
    the background scorer: its process loads the ground truth while the functions are traced."""
    cfg = state.cfg
    state.evaluator = Evaluator(detector(state.model, cfg, state.anchors), cfg, state.world.rank, state.world.size)
    if cfg.eval.async_scoring and state.world.rank == 0:
        state.scorer = Scorer(state.evaluator.gt_json, cfg.eval.backend,
                              out_json=os.path.join(cfg.run.run_dir, "detections.json"),
                              debug_delay=cfg.eval.debug_scoring_delay)


def _trace(state: TrainState) -> None:
    """Traces the train step and the detector now, once: tracing reads no data and changes no
    weight, so it belongs to the initialisation (MLPerf allows such warm-up before run_start).
    XLA still compiles at the first call: the first step's update (ssd.optimizer) and, with
    train.xla, its forward and backward pass and the first evaluation. XLA's one-time start-up
    lines come here, from a trivial compilation, and are dropped (ssd.quiet_stderr)."""
    b, s, n = state.cfg.train.batch_size, state.cfg.model.image_size, len(state.anchors)
    state.train_step.get_concrete_function(tf.TensorSpec([b, s, s, 3], tf.float32),
                                           tf.TensorSpec([b, n, 4], tf.float32), tf.TensorSpec([b, n], tf.int32))
    if state.evaluator is not None:
        state.evaluator.detect.get_concrete_function()
    with quiet_stderr():
        tf.function(lambda: tf.zeros([1]) + 1.0, jit_compile=True)()


# -- the timed run --------------------------------------------------------------------------------


def train(cfg: config.Config, resume: bool = False) -> int:
    """Trains to cfg.eval.target_map; returns the exit status (0 reached, 1 missed, 2 non-finite
    loss, 3 scorer failed)."""
    return run(setup(cfg, resume))


def run(state: TrainState) -> int:
    """run_start .. run_stop, then timing.json and the final checkpoint; returns the exit status."""
    failure, code = None, EXIT_TARGET_MISSED
    try:
        with state.mll.run() as timed:
            stop = train_epochs(state)
            code = EXIT_TARGET_MISSED if stop == "missed" else 0
            if stop == "target":
                timed.success()
    except (NonFiniteLoss, ScorerFailed) as err:
        failure = err
        code = EXIT_NON_FINITE if isinstance(err, NonFiniteLoss) else EXIT_SCORER_FAILED
    except BaseException:
        if state.scorer is not None:
            state.scorer.kill()
        raise
    _finish(state, timed, failure)
    return code


def train_epochs(state: TrainState) -> str:
    """The epochs from state.step on; returns why the run stops: 'target', 'max_steps' or 'missed'.

    A score still pending when the epochs end is waited for: run_stop never precedes it.
    """
    t, stop = state.cfg.train, None
    for epoch in range(state.step // state.steps_per_epoch + 1, t.epochs + 1):
        stop = train_one_epoch(state, epoch) or evaluate_and_decide(state, epoch)
        if stop:
            break
        if t.checkpoint_every_epochs and epoch % t.checkpoint_every_epochs == 0:
            _save(state, wait=False)
    if state.pending is not None:
        stop = _collect_score(state, block=True) or stop
    if stop == "max_steps":
        state.report.line(f"stopped at train.max_steps={t.max_steps} (step {state.step}, "
                          f"epoch {(state.step - 1) // state.steps_per_epoch + 1})")
    elif stop is None:
        state.report.line(f"target mAP {state.cfg.eval.target_map} not reached in {t.epochs} epochs")
    return stop or "missed"


def train_one_epoch(state: TrainState, epoch: int) -> str | None:
    """Epoch `epoch` (1-based) from state.step on; returns 'target' or 'max_steps' when the run stops
    in it. At its end a pending score is waited for (it is known before the next evaluation and
    before run_stop), and the batch-norm moving statistics are averaged over the ranks (they are
    per rank: every rank then evaluates and checkpoints the same model)."""
    with state.mll.epoch(epoch):
        state.report.start_epoch(epoch, state.step)
        with state.timing.part("train_steps"):
            stop = _run_steps(state, epoch)
        state.report.end_steps()
        if state.pending is not None:
            stop = _collect_score(state, block=True) or stop
        if state.world.size > 1:
            distributed.average(state.model.non_trainable_variables)
    state.report.end_epoch(state.step, evaluated=stop is None and epoch in state.eval_epochs)
    return stop


def _run_steps(state: TrainState, epoch: int) -> str | None:
    """The epoch's steps from state.step on, with the checks between steps (_between_steps)."""
    spe = state.steps_per_epoch
    done = state.step - (epoch - 1) * spe  # > 0 only when resuming mid-epoch
    data = pipeline.train_dataset(state.cfg, state.anchors, state.world.rank, state.world.size, state.seed, epoch)
    losses = _LossReader(state)
    stop = None
    for images, (loc_targets, cls_targets) in data.skip(done).take(spe - done):
        loss = state.train_step(images, loc_targets, cls_targets)
        state.step += 1
        losses.add(state.step, loss)
        stop = _between_steps(state, losses)
        if stop:
            break
    losses.read()
    if stop is None and state.step != epoch * spe:
        raise RuntimeError(f"rank {state.world.rank}: the input pipeline ended after {state.step - (epoch - 1) * spe} "
                           f"of {spe} steps of epoch {epoch}")
    return stop


def _between_steps(state: TrainState, losses: _LossReader) -> str | None:
    """After each step: the max_steps stop, the step checkpoint, the look for a pending score."""
    t, step = state.cfg.train, state.step
    if 0 < t.max_steps <= step:
        return "max_steps"
    if t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0:
        losses.read()  # never checkpoint a non-finite state
        _save(state, wait=False)
    if state.pending is not None and step % state.cfg.eval.poll_every_steps == 0:
        return _collect_score(state, block=False)
    return None


class _LossReader:
    """Reads each step's loss one step late (after the next step is dispatched, so that reading
    does not stall the device), raises NonFiniteLoss on a NaN or infinity, reports the rest."""

    def __init__(self, state: TrainState):
        self.state = state
        self.unread = None  # (step, loss tensor)

    def add(self, step: int, loss) -> None:
        self.read()
        self.unread = (step, loss)

    def read(self) -> None:
        if self.unread is None:
            return
        (step, loss), self.unread = self.unread, None
        value = float(loss.numpy())
        if not math.isfinite(value):
            self.state.ckpts.wait()
            raise NonFiniteLoss(f"non-finite loss ({value}) at step {step} "
                                f"(epoch {(step - 1) // self.state.steps_per_epoch + 1}); "
                                f"last good checkpoint: {self.state.ckpts.latest or 'none'}")
        self.state.report.step(step, value)


def evaluate_and_decide(state: TrainState, epoch: int) -> str | None:
    """The evaluation after `epoch`, when it is one: inference on every rank, then the score in this
    process (eval.async_scoring=false: returns 'target' when it is reached) or handed to the
    background scorer (rank 0), to be looked for while the next epoch trains."""
    if epoch not in state.eval_epochs:
        return None
    with state.mll.eval(epoch):
        with state.timing.part("eval_inference"):
            inference = state.evaluator.infer()
        with state.timing.part("scoring_wait"):
            if not state.cfg.eval.async_scoring:
                result = state.evaluator.result(inference, os.path.join(state.cfg.run.run_dir, "detections.json"))
            elif state.scorer is not None:
                state.scorer.submit(epoch, inference.detections, inference.image_ids)
    if not state.cfg.eval.async_scoring:
        return _accept_score(state, epoch, result["map"])
    state.pending = epoch
    if state.world.rank == 0:
        print(f"eval after epoch {epoch}: {inference.image_ids.size} images, {len(inference.detections)} "
              f"detections, inference {inference.seconds:.1f} s on {state.world.size} rank(s); scoring in "
              f"the background ({state.cfg.eval.backend})", flush=True)
    return None


def _collect_score(state: TrainState, block: bool) -> str | None:
    """Every rank at the same step: whether rank 0's background score is known (block: waits for
    it), broadcast from rank 0 as (state 0 pending | 1 known | 2 failed, epoch, mAP); then the
    decision. A failed scorer raises ScorerFailed on every rank."""
    with state.timing.part("scoring_wait"):
        status, failure = np.zeros(3), None
        if state.scorer is not None:
            try:
                score = state.scorer.wait() if block else state.scorer.poll()
                if score is not None:
                    status[:] = (1, score.epoch, score.stats[0])
                    stats = [" ".join(line.split()) for line in coco_eval.format_stats(score.stats).split("\n")]
                    print(f"eval after epoch {score.epoch}: {', '.join(stats[:3])}; scored in {score.seconds:.1f} s "
                          "in the background", flush=True)
                    state.report.line(f"eval after epoch {score.epoch}: {', '.join(stats)}", console=False)
            except ScorerFailed as err:  # every rank must learn of it at this broadcast
                status[0], failure = 2, err
        status = distributed.broadcast_vector(status, "score")
    if failure is not None:
        raise failure
    if status[0] == 2:
        raise ScorerFailed("the background scorer on rank 0 failed (its message is in rank 0's output)")
    return _accept_score(state, int(status[1]), float(status[2])) if status[0] == 1 else None


def _accept_score(state: TrainState, epoch: int, map_value: float) -> str | None:
    """A known score: eval_accuracy with its evaluation's epoch, the epoch's row; 'target' when reached."""
    state.mll.eval_accuracy(map_value, epoch)
    state.report.epoch_map(epoch, map_value)
    state.pending = None
    target = state.cfg.eval.target_map
    if map_value < target:
        return None
    text = f"target mAP {target} reached after epoch {epoch}: mAP {map_value:.4f}"
    if state.step != epoch * state.steps_per_epoch:
        text += f" (known at step {state.step}, in epoch {(state.step - 1) // state.steps_per_epoch + 1})"
    state.report.line(text)
    return "target"


def _save(state: TrainState, wait: bool) -> None:
    """Checkpoint `ckpt-<step>` of the current state (rank 0 writes), unless this step has one.

    Every rank calls it at the same step. The batch-norm moving statistics (per rank until the
    epoch's end) are first averaged over the ranks, so every rank holds what the checkpoint holds
    and a run resumed from it continues bitwise as the uninterrupted one does.
    """
    if state.saved_step == state.step:
        return
    state.counters["step"].assign(state.step)
    state.counters["epoch"].assign(state.step // state.steps_per_epoch)
    with state.timing.part("checkpoints"):
        if state.world.size > 1:
            distributed.average(state.model.non_trainable_variables)
        state.ckpts.save(state.step, wait=wait)
    state.saved_step = state.step


def _finish(state: TrainState, timed, failure: Exception | None) -> None:
    """After run_stop: timing.json, the failure reported, the scorer ended (its last detections.json
    written; killed on a failure), the final checkpoint (not of a non-finite state), the status."""
    report = state.report
    if state.world.rank == 0:
        for text in format_lines(state.timing.write(state.cfg.run.run_dir, timed.run_seconds)):
            report.line(text)
        detect = state.evaluator.detect.experimental_get_tracing_count() if state.evaluator else 0
        report.line(f"tf.function traces: train step {state.train_step.experimental_get_tracing_count()}, "
                    f"detector {detect}")
    if failure is not None:
        report.line(f"aborted: {failure}")
        print(f"rank {state.world.rank}: {failure}", file=sys.stderr, flush=True)
    if state.scorer is not None:
        state.scorer.kill() if failure is not None else state.scorer.close()
    if not isinstance(failure, NonFiniteLoss):
        _save(state, wait=True)
    state.ckpts.wait()
    report.finish("success" if timed.succeeded else "aborted")
    state.mll.close()
    print(f"{distributed.describe(state.world)}: final weights {distributed.checksum(state.model.variables)}",
          flush=True)
    # Every rank has finished (rank 0 writes the most) before the launcher sees the first exit:
    # horovodrun and mpirun end the other ranks as soon as one exits with a non-zero status.
    distributed.barrier()


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.train", __doc__)
    config.add_config_args(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.run_dir from its latest checkpoint")
    args = parser.parse_args(argv)
    cfg = config.config_from_args(parser, args)
    try:
        code = train(cfg, resume=args.resume)
    except SetupError as err:
        parser.fail(str(err))
    sys.exit(code)


if __name__ == "__main__":
    main()
