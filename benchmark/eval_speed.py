"""Time the evaluation step after inference: COCO scoring in process (both backends) and in the
background scorer that training uses.

    python -m benchmark.eval_speed [--images 5000] [--per-image 100] [--seed 0] [--out FILE]

Generates a COCO-like ground truth (`--images` images of 640x480-ish, 1-15 objects each over 80
category ids, 1% crowd) and post-processed network outputs in the layout `ssd.postprocess` returns
(padded to 200 rows, about `--per-image` detections per image: jittered copies of the ground truth
and random boxes). Then:

- in process, for pycocotools and for faster-coco-eval in turn, what rank 0 does after inference
  with eval.async_scoring=false: `detection_array` (numpy) and `coco_stats` (records, the
  ground-truth file, the image-id check, the results object and COCOeval);
- the background scorer (ssd.scorer, eval.backend=faster_coco_eval, the defaults), started and its
  ground truth loaded first as the trainer does during init: the critical-path step is rank 0's
  `submit` (the arrays handed to the scorer process); the background scoring is the time from
  there until the Score can be polled (`wait`).

The 12 stats of all three must be equal, exactly (the script exits 1 otherwise). Prints the figures
and writes --out (default benchmark/results/eval_speed.json: `seconds_pycocotools`, `seconds_faster_coco_eval`,
`seconds_critical_path_async`, `seconds_background_scoring`, `stats_identical`, ...)).

For information it also times writing the detections JSON (`write_records`, what `evaluate` adds
when given `out_json`, as the trainer does) and the in-graph post-processing (ssd.postprocess at the ssd_large
shapes: 15130 default boxes, 81 classes, random logits) on this machine's CPU for `--graph-images`
images; on a GPU that step runs inside inference, before the timed part above.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from benchmark import RESULTS, save_result
from ssd import cli, coco_eval
from ssd.scorer import Scorer

_MAX_DETECTIONS = 200
_CATEGORY_IDS = np.array([i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)])


def make_ground_truth(rng: np.random.Generator, num_images: int) -> dict:
    """COCO instances dict: images of 320-640 x 320-640 px, 1-15 boxes each, 1% crowd."""
    sizes = rng.integers(320, 641, size=(num_images, 2))  # (height, width)
    counts = rng.integers(1, 16, size=num_images)
    image_of = np.repeat(np.arange(num_images), counts)
    hw = sizes[image_of].astype(np.float64)
    wh = rng.uniform(0.03, 0.6, size=(image_of.size, 2)) * hw[:, ::-1]
    xy = rng.uniform(0.0, 1.0, size=(image_of.size, 2)) * (hw[:, ::-1] - wh)
    category = rng.choice(_CATEGORY_IDS, size=image_of.size)
    crowd = rng.random(image_of.size) < 0.01
    images = [{"id": i + 1, "height": int(h), "width": int(w), "file_name": f"{i + 1:012d}.jpg"}
              for i, (h, w) in enumerate(sizes.tolist())]
    annotations = [{"id": k + 1, "image_id": int(image_of[k]) + 1, "category_id": int(category[k]),
                    "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": int(crowd[k])}
                   for k, (x, y, w, h) in enumerate(np.concatenate([xy, wh], axis=1).tolist())]
    categories = [{"id": int(c), "name": f"c{c}", "supercategory": "none"} for c in _CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}


def make_outputs(rng: np.random.Generator, gt: dict, per_image: int) -> dict[str, np.ndarray]:
    """Post-processed outputs for every gt image, in ssd.postprocess's layout (D = 200 rows)."""
    num_images = len(gt["images"])
    sizes = np.array([(im["height"], im["width"]) for im in gt["images"]], np.float64)
    label_of = {int(c): i + 1 for i, c in enumerate(_CATEGORY_IDS)}
    boxes = rng.uniform(0.0, 0.5, size=(num_images, _MAX_DETECTIONS, 4))
    boxes[..., 2:] += boxes[..., :2] + 0.02  # random xyxy boxes
    classes = rng.integers(1, _CATEGORY_IDS.size + 1, size=(num_images, _MAX_DETECTIONS))
    scores = rng.uniform(0.05, 0.5, size=(num_images, _MAX_DETECTIONS))
    slot = np.zeros(num_images, np.int64)
    for ann in gt["annotations"]:  # the first rows of each image: 3 jittered copies per gt box
        i = ann["image_id"] - 1
        h, w = sizes[i]
        x, y, bw, bh = ann["bbox"]
        for _ in range(3):
            jitter = rng.normal(0.0, 0.05, size=4) * [bw, bh, bw, bh]
            x1, y1, x2, y2 = np.array([x, y, x + bw, y + bh]) + jitter
            boxes[i, slot[i]] = [x1 / w, y1 / h, x2 / w, y2 / h]
            classes[i, slot[i]] = label_of[ann["category_id"]]
            scores[i, slot[i]] = rng.uniform(0.3, 1.0)
            slot[i] += 1
    num = np.maximum(slot, rng.integers(per_image - 20, per_image + 21, size=num_images))
    order = np.argsort(-scores, axis=1, kind="stable")  # best first, as postprocess returns them
    take = lambda a: np.take_along_axis(a, order if a.ndim == 2 else order[..., None], axis=1)  # noqa: E731
    return {"image_ids": np.arange(1, num_images + 1), "orig_sizes": sizes.astype(np.int32),
            "boxes": take(boxes).astype(np.float32), "scores": take(scores).astype(np.float32),
            "classes": take(classes).astype(np.int32), "num": num.astype(np.int32)}


def time_backend(gt_path: str, outputs: dict, backend: str) -> dict:
    """Wall-clock and CPU seconds (this process) of the rank-0 work after inference."""
    start, cpu_start = time.perf_counter(), time.process_time()
    detections = coco_eval.detection_array(category_ids=_CATEGORY_IDS, **outputs)
    built = time.perf_counter()
    stats = coco_eval.coco_stats(gt_path, detections, backend, image_ids=outputs["image_ids"])
    done = time.perf_counter()
    return {"seconds": done - start, "cpu_seconds": time.process_time() - cpu_start,
            "seconds_detection_array": built - start, "seconds_scoring": done - built,
            "num_detections": len(detections), "stats": stats}


def time_background(gt_path: str, outputs: dict) -> dict:
    """The background scorer with the default backend: seconds of `submit` (rank 0's critical path)
    and from there to the Score (the scoring overlapping training), and the stats."""
    scorer = Scorer(gt_path, "faster_coco_eval")
    try:
        scorer.ready()  # the trainer does this during its initialisation
        detections = coco_eval.detection_array(category_ids=_CATEGORY_IDS, **outputs)  # each rank's inference
        start = time.perf_counter()
        scorer.submit(1, detections, outputs["image_ids"])
        submitted = time.perf_counter()
        score = scorer.wait()
        done = time.perf_counter()
    finally:
        scorer.close()
    return {"seconds_submit": submitted - start, "seconds_background": done - submitted,
            "seconds_in_scorer": score.seconds, "stats": score.stats}


def time_graph_postprocess(num_images: int, batch: int = 8) -> float:
    """Seconds per image of ssd.postprocess in a tf.function at the ssd_large shapes (after a warm-up)."""
    import tensorflow as tf

    from ssd.anchors import default_boxes
    from ssd.config import load_config
    from ssd.postprocess import postprocess

    cfg = load_config("ssd_large")
    anchors = default_boxes(cfg.model)
    graph = tf.function(lambda loc, logits: postprocess(loc, logits, anchors, cfg))
    loc = tf.random.stateless_normal([batch, len(anchors), 4], seed=[0, 1])
    logits = 3.0 * tf.random.stateless_normal([batch, len(anchors), cfg.model.num_classes], seed=[0, 2])
    graph(loc, logits)["num"].numpy()
    batches = max(1, num_images // batch)
    start = time.perf_counter()
    for _ in range(batches):
        graph(loc, logits)["num"].numpy()
    return (time.perf_counter() - start) / (batches * batch)


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("benchmark.eval_speed", __doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--per-image", type=int, default=100, help="about this many detections per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--graph-images", type=int, default=32, help="images for the in-graph timing (0: skip)")
    parser.add_argument("--out", default=os.path.join(RESULTS, "eval_speed.json"), help="JSON file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    gt = make_ground_truth(rng, args.images)
    outputs = make_outputs(rng, gt, args.per_image)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path = os.path.join(tmp, "instances.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        runs = {backend: time_backend(gt_path, outputs, backend) for backend in coco_eval.BACKENDS}
        background = time_background(gt_path, outputs)
        start = time.perf_counter()
        detections = coco_eval.detection_array(category_ids=_CATEGORY_IDS, **outputs)
        coco_eval.write_records(coco_eval.to_records(detections), os.path.join(tmp, "detections.json"))
        seconds_json = time.perf_counter() - start
    py, fast = runs["pycocotools"], runs["faster_coco_eval"]
    identical = bool(np.array_equal(py["stats"], fast["stats"]) and np.array_equal(py["stats"], background["stats"]))
    result = {
        "images": args.images,
        "detections": py["num_detections"],
        "seconds_pycocotools": round(py["seconds"], 3),
        "seconds_faster_coco_eval": round(fast["seconds"], 3),
        "speedup": round(py["seconds"] / fast["seconds"], 2),
        "cpu_seconds_pycocotools": round(py["cpu_seconds"], 3),
        "cpu_seconds_faster_coco_eval": round(fast["cpu_seconds"], 3),
        "seconds_detection_array": round(min(py["seconds_detection_array"], fast["seconds_detection_array"]), 3),
        "seconds_scoring_pycocotools": round(py["seconds_scoring"], 3),
        "seconds_scoring_faster_coco_eval": round(fast["seconds_scoring"], 3),
        "seconds_critical_path_async": round(background["seconds_submit"], 3),
        "seconds_background_scoring": round(background["seconds_background"], 3),
        "seconds_in_scorer_process": round(background["seconds_in_scorer"], 3),
        "stats_identical": identical,
        "max_stat_difference": float(max(np.max(np.abs(py["stats"] - fast["stats"])),
                                         np.max(np.abs(py["stats"] - background["stats"])))),
        "stats_pycocotools": py["stats"].tolist(),
        "stats_faster_coco_eval": fast["stats"].tolist(),
        "stats_background_scorer": background["stats"].tolist(),
        "seconds_write_json": round(seconds_json, 3),
        "seconds_graph_postprocess_per_image_cpu": (round(time_graph_postprocess(args.graph_images), 4)
                                                    if args.graph_images else None),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "command": "python -m benchmark.eval_speed " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    for backend, run in runs.items():
        print(f"{backend:<17} {run['seconds']:7.2f} s, CPU {run['cpu_seconds']:.2f} s  (detection array "
              f"{run['seconds_detection_array']:.2f} s, scoring {run['seconds_scoring']:.2f} s, "
              f"{run['num_detections']} detections)")
    print(f"background scorer (faster_coco_eval): critical path (submit) {background['seconds_submit']:.2f} s, "
          f"scoring in the background {background['seconds_background']:.2f} s")
    print(f"speed-up {result['speedup']}x, 12 stats identical in all three: {identical} "
          f"(max difference {result['max_stat_difference']:.2e})")
    print(f"writing the detections JSON: {seconds_json:.2f} s")
    print(coco_eval.format_stats(py["stats"]))
    if result["seconds_graph_postprocess_per_image_cpu"] is not None:
        print(f"in-graph post-processing on CPU (ssd_large shapes): "
              f"{result['seconds_graph_postprocess_per_image_cpu'] * 1000:.1f} ms per image")
    save_result(args.out, result)
    if not identical:
        parser.fail("the 12 stats differ between the backends")


if __name__ == "__main__":
    main()
