"""Run by tests/test_evaluate.py under Horovod (or as one plain process): `ssd.evaluate.Evaluator`
on a checkpoint; every rank writes what its `evaluate` returned.

    horovodrun --gloo -np 2 python tests/ranks_evaluate.py CKPT_DIR OUT_DIR [section.key=value ...]

OUT_DIR/rank<r>.json: the result dict of rank r, or {"error": "<type>: <message>"} when evaluate
raised on that rank (the process then exits 1). Rank 0 also writes OUT_DIR/detections.json.
"""

import json
import os
import sys

from ssd import config, distributed
from ssd.anchors import default_boxes
from ssd.checkpoint import restore_model
from ssd.evaluate import Evaluator, detector


def main(checkpoint_dir: str, out_dir: str, overrides: list[str]) -> int:
    world = distributed.init()
    cfg = config.read_config(os.path.join(checkpoint_dir, "config.json"))
    cfg = config.validate(config.apply_overrides(cfg, overrides))
    model = restore_model(checkpoint_dir, cfg)
    evaluator = Evaluator(detector(model, cfg, default_boxes(cfg.model)), cfg, world.rank, world.size)
    try:
        result = evaluator.evaluate(os.path.join(out_dir, "detections.json"))
        status = 0
    except Exception as err:
        result, status = {"error": f"{type(err).__name__}: {err}"}, 1
    result["num_ranks"] = world.size
    with open(os.path.join(out_dir, f"rank{world.rank}.json"), "w") as f:
        json.dump(result, f)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
