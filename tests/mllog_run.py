"""A short run through the training loop's compliance-log sequence, on every Horovod rank.

    horovodrun --gloo -np 2 python tests/mllog_run.py RUN_DIR --accuracies 0.1,0.3 --config demo [k=v ...]

Goes through ssd.train's MLLogger calls in its order (cache_clear, init block with the submission
info and hyperparameters, run block, epochs 1.. with a real Horovod allreduce each, evaluations at
cfg.eval_epochs() reporting the given accuracies in turn) and stops at the first accuracy >=
eval.target_map. As ssd.train with eval.async_scoring (the default), an evaluation's accuracy is
logged during the next epoch (after its allreduce) or, after the last epoch, before run_stop; an
accuracy at the target closes that epoch and the run. `--sync` logs each accuracy right after its
evaluation (eval.async_scoring=false). Exits 0 when the target was reached, 1 otherwise;
`--raise-at-epoch N` raises inside epoch N (the log must then end with run_stop aborted). Every
rank logs; only rank 0 writes.
"""

import argparse
import os
import sys

import ssd  # noqa: F401  (selects Keras 2 for Horovod)
import horovod.tensorflow as hvd
import tensorflow as tf

from ssd.config import add_config_args, config_from_args
from ssd.mllog import MLLogger


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--accuracies", required=True, help="comma-separated mAP per evaluation")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--raise-at-epoch", type=int, default=0)
    parser.add_argument("--sync", action="store_true", help="log each accuracy right after its evaluation")
    add_config_args(parser, default="demo")
    args = parser.parse_args()
    cfg = config_from_args(args)
    accuracies = [float(a) for a in args.accuracies.split(",")]

    hvd.init()
    mll = MLLogger(os.path.join(args.run_dir, "mlperf_log.txt"), hvd.rank())
    mll.cache_clear()
    with mll.block("init"):
        mll.submission_info(cfg)
        mll.hyperparameters(cfg, seed=args.seed, global_batch=cfg.train.batch_size * hvd.size(),
                            train_samples=1000, eval_samples=100)

    def accept(epoch: int, value: float) -> bool:
        mll.eval_accuracy(value, epoch)
        return value >= cfg.eval.target_map

    with mll.run() as run:
        pending, reached = None, False  # (epoch, accuracy) of an evaluation being scored
        for epoch in range(1, cfg.train.epochs + 1):
            with mll.epoch(epoch):
                total = hvd.allreduce(tf.constant(float(epoch)), op=hvd.Sum)
                assert int(total) == epoch * hvd.size()
                if epoch == args.raise_at_epoch:
                    raise RuntimeError(f"raised inside epoch {epoch} as asked")
                if pending:
                    reached, pending = accept(*pending), None
            if reached:
                break
            if epoch in cfg.eval_epochs():
                with mll.eval(epoch):
                    value = accuracies.pop(0) if accuracies else 0.0
                if not args.sync:
                    pending = (epoch, value)
                elif accept(epoch, value):
                    reached = True
                    break
        if pending:
            reached = accept(*pending)
        if reached:
            run.success()
    return 0 if run.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
