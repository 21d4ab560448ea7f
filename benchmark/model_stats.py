"""Model size figures: trainable parameters, default boxes, forward GFLOPs per image.

    python -m benchmark.model_stats [--config NAME] [key=value ...] [--out FILE]

prints `trainable_params=<n>`, `default_boxes=<n>` and `forward_gflops=<x>`, one per line, and saves
them to --out (default benchmark/results/model_stats_<config>.json). FLOPs are TensorFlow's profiler count
(tf.compat.v1.profiler, float_operation: a multiply-add is 2 FLOPs) of the inference graph for one
image, with the variables frozen to constants; the reference gives about 433 GFLOPs at 1200.
"""

from __future__ import annotations

import os

import numpy as np

import ssd  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from benchmark import RESULTS, save_result
from ssd import anchors, cli, config
from ssd.model import build_model



def forward_flops(model, image_size: int) -> int:
    """FLOPs of one forward pass (batch 1, inference mode) by TensorFlow's profiler."""
    fn = tf.function(lambda images: model(images, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, image_size, image_size, 3], tf.float32))
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                            options=options)
    return int(profile.total_float_ops)


def model_stats(cfg: config.Config) -> dict:
    model = build_model(cfg.model)
    return {
        "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_weights)),
        "default_boxes": int(len(anchors.default_boxes(cfg.model))),
        "forward_gflops": round(forward_flops(model, cfg.model.image_size) / 1e9, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("benchmark.model_stats", __doc__)
    config.add_config_args(parser)
    parser.add_argument("--out", help="JSON file (default benchmark/results/model_stats_<config>.json)")
    args = parser.parse_args(argv)
    cfg = config.config_from_args(parser, args)
    stats = model_stats(cfg)
    for key, value in stats.items():
        print(f"{key}={value}")
    record = {"command": "python -m benchmark.model_stats --config " + " ".join([args.config, *args.overrides]),
              "config": config.to_dict(cfg)["model"], **stats}
    save_result(args.out or os.path.join(RESULTS, f"model_stats_{args.config}.json"), record)


if __name__ == "__main__":
    main()
