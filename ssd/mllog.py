"""The MLPerf compliance log: the only writer of `:::MLLOG` lines, on rank 0 only.

    mll = MLLogger(os.path.join(run_dir, "mlperf_log.txt"), rank)
    mll.cache_clear(cfg.run.cache_cleared)
    with mll.block("init"):
        mll.submission_info(cfg)
        mll.hyperparameters(cfg, seed=seed, global_batch=gb, train_samples=n, eval_samples=m)
    with mll.run() as run:
        for epoch in range(1, cfg.train.epochs + 1):
            with mll.epoch(epoch):
                ...
            if epoch in cfg.eval_epochs():
                with mll.eval(epoch):
                    result = evaluate(...)
                mll.eval_accuracy(result["map"], epoch)
                if result["map"] >= cfg.eval.target_map:
                    run.success()
                    break

Start/stop pairs are context managers, so a stop is written on an early return or an exception too,
and a run that leaves its block without `run.success()` ends with `run_stop` status `aborted`.
Each line carries the file and line of the code that called this module (not of this module),
relative to the repository root. The key order is docs/reference.md's; compliance/*.yaml checks it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator

from mlperf_logging.mllog import constants
from mlperf_logging.mllog import mllog as _mllog

from ssd.schedule import scaled_base_lr

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP_FILES = (os.path.abspath(__file__), os.path.abspath(contextlib.__file__))
_LOGGER_IDS = itertools.count()  # logging keeps loggers by name forever: one fresh name per MLLogger


def _now_ms() -> int:
    """Milliseconds since the Unix epoch, as mlperf_logging stamps a line."""
    return int(time.time() * 1000)


def _stack_offset() -> int:
    """The `stack_offset` that makes mlperf_logging name the first caller outside this module.

    mlperf_logging reports the frame 2 + stack_offset above its `get_caller`, and `_log` is 3 frames
    above get_caller (get_caller <- _log_helper <- start/end/event <- _log). Our caller is `depth`
    frames above `_log`, past this module's own frames and contextlib's (`with` blocks), so
    2 + stack_offset = 3 + depth.
    """
    frame = sys._getframe(2)  # the caller of _log
    depth = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename) in _SKIP_FILES:
        frame = frame.f_back
        depth += 1
    return depth + 1


class Run:
    """The handle `MLLogger.run()` yields: call `success()` once the target is reached.

    start_ms / stop_ms: the times logged with run_start / run_stop (ms since the epoch; stop_ms is
    set when the block ends), on every rank, so `run_seconds` is the score as the log states it.
    """

    def __init__(self, start_ms: int):
        self.succeeded = False
        self.start_ms = start_ms
        self.stop_ms: int | None = None

    @property
    def run_seconds(self) -> float:
        return (self.stop_ms - self.start_ms) / 1000.0

    def success(self) -> None:
        self.succeeded = True


class MLLogger:
    """Writes MLPerf log lines to `path` (and stdout) on rank 0; every other rank writes nothing.

    path: the compliance log file, e.g. <run_dir>/mlperf_log.txt (appended to; the run directory
    holds one run). rank: the Horovod rank of this process. stdout: also print the lines (run.echo_mllog).
    """

    def __init__(self, path: str, rank: int, stdout: bool = False):
        self.path = path
        self.enabled = rank == 0
        self._logger = None
        self._run_open = False  # run_start logged, run_stop not yet
        self._run_lock = threading.Lock()
        if not self.enabled:
            return
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        logger = logging.getLogger(f"ssd.mllog.{next(_LOGGER_IDS)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handlers = [logging.FileHandler(path)] + ([logging.StreamHandler(sys.stdout)] if stdout else [])
        for handler in handlers:
            handler.setLevel(logging.INFO)
            logger.addHandler(handler)
        self._logger = logger
        # root_dir is used by mlperf_logging as a regex prefix: escaped, so any path is literal.
        self._mll = _mllog.MLLogger(logger=logger, root_dir=re.escape(_REPO_ROOT))

    def close(self) -> None:
        """Closes the log file (later calls write nothing)."""
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)
        self._logger = None
        self.enabled = False

    def _log(self, event_type: str, key: str, value=None, metadata: dict | None = None,
             time_ms: int | None = None) -> None:
        if not self.enabled:
            return
        log = {
            constants.INTERVAL_START: self._mll.start,
            constants.INTERVAL_END: self._mll.end,
            constants.POINT_IN_TIME: self._mll.event,
        }[event_type]
        log(key=key, value=value, metadata=metadata, time_ms=time_ms, stack_offset=_stack_offset())

    def event(self, key: str, value=None, metadata: dict | None = None) -> None:
        """A point-in-time line `key` with `value` and extra `metadata`."""
        self._log(constants.POINT_IN_TIME, key, value, metadata)

    def cache_clear(self, cleared: bool) -> None:
        """`cache_clear` True only when the page cache was really dropped before this run (the
        launcher says so: cfg.run.cache_cleared); False otherwise."""
        if not isinstance(cleared, bool):
            raise ValueError(f"mllog: cache_clear takes a bool (was the page cache dropped?), got {cleared!r}")
        self._log(constants.POINT_IN_TIME, constants.CACHE_CLEAR, cleared)

    def submission_info(self, cfg) -> None:
        """submission_benchmark/org/division/status/platform from cfg.run."""
        run = cfg.run
        for key, value in [
            (constants.SUBMISSION_BENCHMARK, run.benchmark),
            (constants.SUBMISSION_ORG, run.submission_org),
            (constants.SUBMISSION_DIVISION, run.submission_division),
            (constants.SUBMISSION_STATUS, run.submission_status),
            (constants.SUBMISSION_PLATFORM, run.submission_platform),
        ]:
            self._log(constants.POINT_IN_TIME, key, value)

    def hyperparameters(self, cfg, *, seed: int, global_batch: int, train_samples: int,
                        eval_samples: int) -> None:
        """Every hyperparameter key of docs/reference.md once, from cfg and the run's resolved values.

        seed: the seed this run uses (fresh per run unless cfg.train.seed fixes it). global_batch:
        images per step over all ranks. The base LR logged is the scaled one the optimizer uses
        (train.base_lr x global_batch / train.lr_reference_batch). max_samples is the crop's
        number of tries; model_bn_span the images per batch-norm statistic (the per-rank batch:
        batch norm is not synchronised across ranks).
        """
        t = cfg.train
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"mllog: seed must be a non-negative int (the resolved seed), got {seed!r}")
        for key, value in [
            (constants.SEED, seed),
            (constants.GLOBAL_BATCH_SIZE, global_batch),
            (constants.GRADIENT_ACCUMULATION_STEPS, 1),
            (constants.OPT_NAME, "sgd"),
            (constants.OPT_BASE_LR, scaled_base_lr(t, global_batch)),
            (constants.OPT_WEIGHT_DECAY, t.weight_decay),
            (constants.OPT_LR_WARMUP_STEPS, t.warmup_steps),
            (constants.OPT_LR_WARMUP_FACTOR, t.warmup_factor),  # the MLPerf rule's integer k
            (constants.OPT_LR_DECAY_BOUNDARY_EPOCHS, list(t.lr_decay_epochs)),
            (constants.MAX_SAMPLES, cfg.data.crop_max_trials),
            (constants.MODEL_BN_SPAN, t.batch_size),
            (constants.TRAIN_SAMPLES, train_samples),
            (constants.EVAL_SAMPLES, eval_samples),
        ]:
            self._log(constants.POINT_IN_TIME, key, value)

    @contextlib.contextmanager
    def block(self, name: str, metadata: dict | None = None) -> Iterator[None]:
        """`<name>_start` ... `<name>_stop` around the body, the stop also on an exception."""
        self._log(constants.INTERVAL_START, f"{name}_start", metadata=metadata)
        try:
            yield
        finally:
            self._log(constants.INTERVAL_END, f"{name}_stop", metadata=metadata)

    @contextlib.contextmanager
    def run(self) -> Iterator[Run]:
        """`run_start` ... `run_stop` {status: success if run.success() was called, else aborted}.

        An exception inside logs `aborted` and propagates.
        """
        run = Run(_now_ms())
        self._log(constants.INTERVAL_START, constants.RUN_START, time_ms=run.start_ms)
        self._run_open = True
        status = constants.ABORTED
        try:
            yield run
            if run.succeeded:
                status = constants.SUCCESS
        finally:
            run.stop_ms = _now_ms()
            self._stop_run(status, run.stop_ms)

    def abort_run(self) -> None:
        """`run_stop` {status: aborted} now, if the run has started and not stopped; safe from any
        thread (ssd.distributed.on_termination calls it while the main thread may be blocked)."""
        self._stop_run(constants.ABORTED, _now_ms())

    def _stop_run(self, status: str, time_ms: int) -> None:
        with self._run_lock:
            if self._run_open:
                self._run_open = False
                self._log(constants.INTERVAL_END, constants.RUN_STOP, metadata={constants.STATUS: status},
                          time_ms=time_ms)

    def epoch(self, n: int):
        """`epoch_start` / `epoch_stop` {epoch_num: n}; n counts from 1."""
        return self.block("epoch", {constants.EPOCH_NUM: n})

    def eval(self, n: int):
        """`eval_start` / `eval_stop` {epoch_num: n}: the evaluation after epoch n."""
        return self.block("eval", {constants.EPOCH_NUM: n})

    def eval_accuracy(self, value: float, n: int) -> None:
        """`eval_accuracy` {epoch_num: n}; value is COCO mAP as a fraction in [0, 1]."""
        self._log(constants.POINT_IN_TIME, constants.EVAL_ACCURACY, float(value), {constants.EPOCH_NUM: n})
