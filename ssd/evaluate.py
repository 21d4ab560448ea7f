"""COCO box evaluation on the val split: inference on every rank, scoring on rank 0.

    python -m ssd.evaluate --checkpoint DIR | --saved-model DIR [--out detections.json] [key=value ...]

`Evaluator` is built once per run. Each rank runs the detector (model and post-processing, one
tf.function traced once) on its share of val and turns its detections into [N, 7] rows; `infer`
gathers them from every rank. Rank 0 orders them by image id (the result does not depend on the
number of ranks), checks the images against val/instances.json and scores; `evaluate` broadcasts the
result, so every rank returns it or raises. The trainer hands `infer`'s result to ssd.scorer instead.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

import tensorflow as tf

from ssd import cli, coco_eval, config, distributed
from ssd.box_ops import swap_xy
from ssd.data import pipeline
from ssd.data.manifest import read_manifest
from ssd.postprocess import postprocess

OUTPUT_KEYS = ("boxes", "scores", "classes", "num")


def detector(model, cfg: config.Config, anchors):
    """images [B, S, S, 3] -> ssd.postprocess dict: the model and the post-processing in one graph.

    One tf.function with a fixed input signature (any B), so it is traced once per run
    (`detect.experimental_get_tracing_count()`); compiled by XLA with train.xla.
    """
    size = cfg.model.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
                 jit_compile=True if cfg.train.xla else None)
    def detect(images):
        loc, logits = model(images, training=False)
        return postprocess(loc, logits, anchors, cfg)

    return detect


def saved_model_detector(path: str):
    """The `serving_default` signature of a SavedModel from `python -m ssd.export` as a detector.

    Takes NHWC images (transposed for an NCHW export) and returns the ssd.postprocess dict (boxes
    back to xyxy from the export's (ymin, xmin, ymax, xmax); `num`: the rows with a score > 0; the
    export's padding rows have score 0).
    """
    signature = tf.saved_model.load(path).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    nchw = spec.shape[1] == 3

    def detect(images):
        out = signature(image=tf.transpose(images, [0, 3, 1, 2]) if nchw else images)
        return {"boxes": swap_xy(out["detection_bboxes"]), "scores": out["detection_scores"],
                "classes": out["detection_classes"],
                "num": tf.reduce_sum(tf.cast(out["detection_scores"] > 0.0, tf.int32), axis=1)}

    return detect


@dataclasses.dataclass
class Inference:
    """An evaluation's detections gathered from every rank (the same on every rank)."""

    detections: np.ndarray  # [N, 7] float64 coco_eval.detection_array rows, in rank order
    image_ids: np.ndarray  # [M] int64: every image that went through inference, in rank order
    seconds: float  # this rank's inference (the detector over its batches)


class Evaluator:
    """One run's evaluation, built once: the detector, this rank's val batches, the category ids,
    and (loaded on rank 0 by the first `evaluate`) the ground truth. See the module docstring.

    detect: images [B, S, S, 3] -> ssd.postprocess dict (`detector` or `saved_model_detector`).
    """

    def __init__(self, detect, cfg: config.Config, rank: int, num_ranks: int):
        self.detect, self.cfg, self.rank, self.num_ranks = detect, cfg, rank, num_ranks
        val_dir = os.path.join(cfg.data.data_dir, "val")
        self.category_ids = read_manifest(val_dir)["category_ids"]
        self.gt_json = os.path.join(val_dir, "instances.json")
        self.dataset = pipeline.eval_dataset(cfg, rank, num_ranks)
        self.ground_truth = None  # coco_eval.GroundTruth, rank 0

    def infer(self) -> Inference:
        """Every rank: the detector over this rank's batches, the detections gathered from all ranks."""
        start = time.perf_counter()
        parts = {k: [] for k in ("image_id", "orig_size", *OUTPUT_KEYS)}
        for batch in self.dataset:
            valid = batch["valid"].numpy()
            out = self.detect(batch["image"])
            for key in ("image_id", "orig_size"):
                parts[key].append(batch[key].numpy()[valid])
            for key in OUTPUT_KEYS:
                parts[key].append(out[key].numpy()[valid])
        out = {k: np.concatenate(v) for k, v in parts.items()}
        seconds = time.perf_counter() - start
        local = coco_eval.detection_array(out["image_id"], out["orig_size"], out["boxes"], out["scores"],
                                          out["classes"], out["num"], self.category_ids)
        return Inference(distributed.allgather(local, "eval_detections"),
                         distributed.allgather(out["image_id"].astype(np.int64), "eval_image_ids"), seconds)

    def score(self, inference: Inference, out_json: str | None = None) -> np.ndarray:
        """Rank 0, in this process: the 12 stats of `inference`; then its detections to out_json."""
        if self.ground_truth is None:
            self.ground_truth = coco_eval.load_ground_truth(self.gt_json, self.cfg.eval.backend)
        detections = coco_eval.order_by_image(inference.detections)
        try:
            return coco_eval.coco_stats(self.ground_truth, detections, image_ids=inference.image_ids)
        finally:
            if out_json:
                coco_eval.write_records(coco_eval.to_records(detections), out_json)

    def evaluate(self, out_json: str | None = None, verbose: bool = True) -> dict:
        """Every rank: `infer`, then `result` (see there)."""
        return self.result(self.infer(), out_json, verbose)

    def result(self, inference: Inference, out_json: str | None = None, verbose: bool = True) -> dict:
        """Every rank: `score` on rank 0 (out_json: rank 0 writes the detections there, in COCO
        results format ordered by image id), the result broadcast. Returns, on every rank, `stats`
        (the 12 COCO numbers, coco_eval.STAT_NAMES), `map` (stats[0]), `num_images`,
        `num_detections`, `seconds_inference` (this rank) and `seconds_scoring` (score, broadcast)."""
        start = time.perf_counter()
        result = np.zeros(1 + len(coco_eval.STAT_NAMES))  # (ok, 12 stats)
        failure = None
        if self.rank == 0:
            try:
                result[1:] = self.score(inference, out_json)
                result[0] = 1.0
            except Exception as err:  # every rank must learn of it, or the others wait at the broadcast
                failure = err
        result = distributed.broadcast_vector(result, "eval_result")
        if failure is not None:
            raise failure
        if result[0] != 1.0:
            raise RuntimeError("evaluation failed on rank 0 (see its error)")
        stats = result[1:].tolist()
        summary = {"stats": stats, "map": stats[0], "num_images": int(inference.image_ids.size),
                   "num_detections": int(inference.detections.shape[0]), "seconds_inference": inference.seconds,
                   "seconds_scoring": time.perf_counter() - start}
        if self.rank == 0 and verbose:
            print(f"eval: {summary['num_images']} images, {summary['num_detections']} detections, inference "
                  f"{summary['seconds_inference']:.1f} s on {self.num_ranks} rank(s), scoring "
                  f"{summary['seconds_scoring']:.1f} s ({self.cfg.eval.backend})\n"
                  f"{coco_eval.format_stats(stats)}", flush=True)
        return summary


def model_dir_config(model_path: str, parser: cli.Parser, args) -> config.Config:
    """config.json of a model directory (or of a checkpoint prefix's directory) with the overrides
    of `args`, or the --config preset with them where there is none."""
    model_dir = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        return config.config_from_args(parser, args)
    try:
        return config.validate(config.apply_overrides(config.read_config(path), args.overrides))
    except config.ConfigError as err:
        parser.fail(str(err))


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.evaluate", __doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint directory (or prefix) of a tf.train.Checkpoint(model=...)")
    source.add_argument("--saved-model", help="SavedModel directory written by python -m ssd.export")
    parser.add_argument("--out", default="detections.json", help="detections JSON to write (COCO results format)")
    config.add_config_args(parser)
    args = parser.parse_args(argv)
    cfg = model_dir_config(args.checkpoint or args.saved_model, parser, args)
    world = distributed.init()
    if args.checkpoint:
        from ssd.anchors import default_boxes
        from ssd.checkpoint import restore_model

        try:
            model = restore_model(args.checkpoint, cfg)
        except FileNotFoundError as err:
            parser.fail(str(err))
        detect = detector(model, cfg, default_boxes(cfg.model))
    else:
        detect = saved_model_detector(args.saved_model)
    result = Evaluator(detect, cfg, world.rank, world.size).evaluate(args.out)
    if world.rank == 0:
        print(f"mAP {result['map']:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
