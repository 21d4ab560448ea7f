"""Run by tests/test_pipeline.py under Horovod: what each rank's input pipelines yield.

    horovodrun --gloo -np 2 python tests/data_ranks.py DATA_DIR OUT.json

Every rank reads its training records of epochs 0 and 1 and its evaluation batches; the image ids
are gathered with Horovod and rank 0 writes {"train": {epoch: [[ids of rank r] ...]},
"train_steps": [...], "eval": [[valid ids of rank r] ...], "eval_batches": [...]}.
"""

import json
import sys

import ssd  # noqa: F401  (selects Keras 2 for Horovod)
import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

from ssd.config import load_config
from ssd.data import pipeline, records


def _gather(values: list[int]) -> list[list[int]]:
    """Each rank's list of ints, on every rank (lists may differ in length)."""
    values = tf.constant(values, tf.int64)
    counts = hvd.allgather(tf.reshape(tf.size(values, out_type=tf.int64), [1])).numpy()
    flat = hvd.allgather(values).numpy()
    return [part.tolist() for part in np.split(flat, np.cumsum(counts)[:-1])]


def main(data_dir: str, out: str) -> None:
    hvd.init()
    cfg = load_config("demo", [f"data.data_dir={data_dir}", "train.batch_size=4", "eval.batch_size=5",
                               "data.deterministic=true"])
    result = {"train": {}, "train_steps": [], "eval": [], "eval_batches": []}
    for epoch in (0, 1):
        ds, steps = pipeline.train_records(cfg, hvd.rank(), hvd.size(), seed=11, epoch=epoch)
        ids = [int(records.parse(s)["image_id"]) for _, s in ds]
        result["train"][epoch] = _gather(ids)
        result["train_steps"] = [v[0] for v in _gather([steps])]
    valid, batches = [], 0
    for batch in pipeline.eval_dataset(cfg, hvd.rank(), hvd.size()):
        valid += batch["image_id"].numpy()[batch["valid"].numpy()].tolist()
        batches += 1
    result["eval"] = _gather(valid)
    result["eval_batches"] = [v[0] for v in _gather([batches])]
    if hvd.rank() == 0:
        with open(out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
