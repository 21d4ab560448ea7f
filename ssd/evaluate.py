"""COCO box evaluation on the val split: inference on every rank, scoring on rank 0.

    python -m ssd.evaluate --checkpoint DIR [--out detections.json] [section.key=value ...]
    python -m ssd.evaluate --saved-model DIR [--out detections.json] [section.key=value ...]
    horovodrun -np 2 python -m ssd.evaluate --checkpoint DIR ...     (inference split over ranks)

DIR's config.json (written by the trainer, `ssd.import_weights` and `ssd.export`) gives the model
and post-processing settings; `--config NAME` is used only where DIR has none; `key=value`
overrides apply on top (e.g. `data.data_dir=...`, `eval.batch_size=8`,
`eval.backend=faster_coco_eval`). Prints the 12 COCO statistics and writes the detections in the
COCO results format.

How (`evaluate`): rank r runs the model and the in-graph post-processing (ssd.postprocess) on its
share of `data.data_dir/val` (ssd.data.pipeline.eval_dataset: record i on rank i % R, padded
batches); each rank turns its detections into a [N, 7] array (ssd.coco_eval.detection_array:
original-image pixels, COCO category ids); Horovod allgather collects the arrays and the image ids;
rank 0 orders the detections by image id (so the result does not depend on the number of ranks),
checks that the evaluated images are exactly the images of `val/instances.json`, each once, scores
with COCOeval (`eval.backend`), and broadcasts the 12 numbers, so every rank returns the same
result and takes the same stop decision. A failure on rank 0 is broadcast too: every rank raises.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import ssd  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf

from ssd import coco_eval, config
from ssd.data import pipeline
from ssd.postprocess import postprocess

OUTPUT_KEYS = ("boxes", "scores", "classes", "num")


def detector(model, cfg: config.Config, anchors):
    """images [B, S, S, 3] -> ssd.postprocess dict; the model and the post-processing in one graph."""

    @tf.function(reduce_retracing=True)
    def detect(images):
        loc, logits = model(images, training=False)
        return postprocess(loc, logits, anchors, cfg)

    return detect


def saved_model_detector(path: str):
    """The `serving_default` signature of a SavedModel from `python -m ssd.export` as a detector.

    Takes NHWC images (transposed for an NCHW export) and returns the ssd.postprocess dict
    (`num`: the rows with a score > 0; the export's padding rows have score 0).
    """
    signature = tf.saved_model.load(path).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    nchw = spec.shape[1] == 3

    def detect(images):
        out = signature(image=tf.transpose(images, [0, 3, 1, 2]) if nchw else images)
        return {"boxes": out["detection_bboxes"], "scores": out["detection_scores"],
                "classes": out["detection_classes"],
                "num": tf.reduce_sum(tf.cast(out["detection_scores"] > 0.0, tf.int32), axis=1)}

    return detect


def _infer(detect, dataset) -> dict[str, np.ndarray]:
    """Runs `detect` over this rank's batches; returns the outputs of the valid images only."""
    parts = {k: [] for k in ("image_id", "orig_size", *OUTPUT_KEYS)}
    for batch in dataset:
        valid = batch["valid"].numpy()
        out = detect(batch["image"])
        for key in ("image_id", "orig_size"):
            parts[key].append(batch[key].numpy()[valid])
        for key in OUTPUT_KEYS:
            parts[key].append(out[key].numpy()[valid])
    return {k: np.concatenate(v) for k, v in parts.items()}


def _allgather(array: np.ndarray, num_ranks: int, name: str) -> np.ndarray:
    """Every rank's array concatenated in rank order (along axis 0); itself for one rank."""
    if num_ranks == 1:
        return array
    import horovod.tensorflow as hvd

    return hvd.allgather(tf.constant(array), name=name).numpy()


def _broadcast(values: np.ndarray, num_ranks: int) -> np.ndarray:
    """Rank 0's float64 vector on every rank."""
    if num_ranks == 1:
        return values
    import horovod.tensorflow as hvd

    return hvd.broadcast(tf.constant(values, tf.float64), root_rank=0, name="eval_result").numpy()


def evaluate_detector(detect, cfg: config.Config, rank: int, num_ranks: int, out_json: str | None = None,
                      verbose: bool = True) -> dict:
    """COCO evaluation of `detect` (images -> ssd.postprocess dict); see the module docstring.

    Called by every rank (Horovod initialised when num_ranks > 1). out_json: rank 0 writes the
    detections there (COCO results format, ordered by image id). Returns, on every rank, `stats`
    (the 12 COCO numbers, coco_eval.STAT_NAMES), `map` (stats[0]), `num_images`, `num_detections`,
    `seconds_inference` (this rank) and `seconds_scoring` (gather, check, JSON, COCOeval).
    """
    val_dir = os.path.join(cfg.data.data_dir, "val")
    category_ids = pipeline.read_manifest(val_dir)["category_ids"]
    gt_json = os.path.join(val_dir, "instances.json")
    start = time.perf_counter()
    out = _infer(detect, pipeline.eval_dataset(cfg, rank, num_ranks))
    inferred = time.perf_counter()
    local = coco_eval.detection_array(out["image_id"], out["orig_size"], out["boxes"], out["scores"],
                                      out["classes"], out["num"], category_ids)
    detections = _allgather(local, num_ranks, "eval_detections")
    image_ids = _allgather(out["image_id"].astype(np.int64), num_ranks, "eval_image_ids")

    result = np.zeros(1 + len(coco_eval.STAT_NAMES))  # (ok, 12 stats)
    failure = None
    if rank == 0:
        try:
            detections = detections[np.argsort(detections[:, 0], kind="stable")]
            if out_json:
                coco_eval.write_records(coco_eval.to_records(detections), out_json)
            result[0] = 1.0
            result[1:] = coco_eval.coco_stats(gt_json, detections, cfg.eval.backend, image_ids=image_ids)
        except Exception as err:  # every rank must learn of it, or the others wait at the broadcast
            result[0] = 0.0
            failure = err
    result = _broadcast(result, num_ranks)
    if failure is not None:
        raise failure
    if result[0] != 1.0:
        raise RuntimeError("evaluation failed on rank 0 (see its error)")
    scored = time.perf_counter()
    stats = result[1:].tolist()
    summary = {"stats": stats, "map": stats[0], "num_images": int(image_ids.size),
               "num_detections": int(detections.shape[0]), "seconds_inference": inferred - start,
               "seconds_scoring": scored - inferred}
    if rank == 0 and verbose:
        print(f"eval: {summary['num_images']} images, {summary['num_detections']} detections, inference "
              f"{summary['seconds_inference']:.1f} s on {num_ranks} rank(s), scoring "
              f"{summary['seconds_scoring']:.1f} s ({cfg.eval.backend})\n{coco_eval.format_stats(stats)}", flush=True)
    return summary


def evaluate(model, cfg: config.Config, anchors, rank: int, num_ranks: int, out_json: str | None = None) -> dict:
    """COCO evaluation of a Keras SSD model (model(images) -> (loc, logits)); see evaluate_detector."""
    return evaluate_detector(detector(model, cfg, anchors), cfg, rank, num_ranks, out_json)


def model_dir_config(model_path: str, args) -> config.Config:
    """config.json of a model directory (or of a checkpoint prefix's directory) with the overrides
    of `args`, or the --config preset with them where there is none."""
    model_dir = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        return config.config_from_args(args)
    try:
        return config.validate(config.apply_overrides(config.read_config(path), args.overrides))
    except config.ConfigError as err:
        sys.exit(f"config error: {err}")


def load_checkpoint_model(checkpoint_dir: str, cfg: config.Config):
    """The Keras model of cfg.model with the weights of checkpoint_dir's latest checkpoint (or a prefix)."""
    from ssd.model import build_model

    prefix = tf.train.latest_checkpoint(checkpoint_dir) if os.path.isdir(checkpoint_dir) else checkpoint_dir
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(f"{checkpoint_dir}: no checkpoint there")
    model = build_model(cfg.model)
    # The trainer's checkpoints also hold the optimizer and counters: only the model is read, all of it.
    tf.train.Checkpoint(model=model).read(prefix).assert_existing_objects_matched().expect_partial()
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssd.evaluate", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint directory (or prefix) of a tf.train.Checkpoint(model=...)")
    source.add_argument("--saved-model", help="SavedModel directory written by python -m ssd.export")
    parser.add_argument("--out", default="detections.json", help="detections JSON to write (COCO results format)")
    config.add_config_args(parser)
    args = parser.parse_args(argv)
    from ssd import distributed

    world = distributed.init()
    cfg = model_dir_config(args.checkpoint or args.saved_model, args)
    if args.checkpoint:
        from ssd.anchors import default_boxes

        try:
            model = load_checkpoint_model(args.checkpoint, cfg)
        except FileNotFoundError as err:
            sys.exit(f"evaluate: {err}")
        detect = detector(model, cfg, default_boxes(cfg.model))
    else:
        detect = saved_model_detector(args.saved_model)
    result = evaluate_detector(detect, cfg, world.rank, world.size, args.out)
    if world.rank == 0:
        print(f"mAP {result['map']:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
