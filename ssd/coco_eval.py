"""COCO box evaluation: detections in the COCO results format and the 12 COCOeval statistics.

Two backends with one API: faster-coco-eval (a C++ reimplementation, the default:
`eval.backend=faster_coco_eval`, 9x faster) and pycocotools (the official scorer,
`eval.backend=pycocotools`). They give the same 12 numbers: equal on the 5000-image
`python -m benchmark.eval_speed`, and within 1e-15 on coco128 (tests/test_coco_eval.py), where two
averages differ in the last bit because the C++ code sums in another order.

A detection array is float64 [N, 7]: (image_id, x, y, w, h, score, category_id) with the box in
pixels of the original image (x, y the top-left corner), the layout of pycocotools'
`loadNumpyAnnotations`. A record is the COCO results-format dict
{"image_id", "category_id", "bbox": [x, y, w, h], "score"}.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json

import numpy as np

STAT_NAMES = (
    "AP@[.5:.95]", "AP@.5", "AP@.75", "AP small", "AP medium", "AP large",
    "AR@1", "AR@10", "AR@100", "AR small", "AR medium", "AR large",
)
BACKENDS = ("pycocotools", "faster_coco_eval")


def detection_array(image_ids, orig_sizes, boxes, scores, classes, num, category_ids) -> np.ndarray:
    """The [N, 7] detection array of a batch of post-processed images (vectorised, no Python loop).

    image_ids [M] int, orig_sizes [M, 2] (height, width) pixels, boxes [M, D, 4] xyxy normalised,
    scores [M, D], classes [M, D] labels 1..K, num [M] (rows of each image that hold detections);
    category_ids [K]: the COCO category id of label i is category_ids[i - 1].
    """
    boxes = np.asarray(boxes, np.float64)
    taken = np.arange(boxes.shape[1])[None, :] < np.asarray(num)[:, None]  # [M, D]
    image_row = np.nonzero(taken)[0]
    height = np.asarray(orig_sizes, np.float64)[image_row, 0]
    width = np.asarray(orig_sizes, np.float64)[image_row, 1]
    x1, y1, x2, y2 = boxes[taken].T
    labels = np.asarray(classes)[taken]
    lookup = np.asarray(category_ids, np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > lookup.size):
        raise ValueError(f"class labels must be in 1..{lookup.size}, got {labels.min()}..{labels.max()}")
    return np.stack([
        np.asarray(image_ids, np.float64)[image_row],
        x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height,
        np.asarray(scores, np.float64)[taken],
        lookup[labels - 1].astype(np.float64),
    ], axis=1).reshape(-1, 7)


def to_records(detections: np.ndarray) -> list[dict]:
    """COCO results-format records of a [N, 7] detection array, in its order (fresh dicts)."""
    detections = np.asarray(detections, np.float64).reshape(-1, 7)
    image_ids = detections[:, 0].astype(np.int64).tolist()
    category_ids = detections[:, 6].astype(np.int64).tolist()
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(image_ids, category_ids, detections[:, 1:5].tolist(), detections[:, 5].tolist())]


def order_by_image(detections: np.ndarray) -> np.ndarray:
    """The rows of a detection array ordered by image id, stably: the order of the gathered ranks'
    detections then does not depend on the number of ranks (nor do COCOeval's tie-breaks)."""
    return detections[np.argsort(detections[:, 0], kind="stable")]


def write_records(records: list[dict], path: str) -> None:
    """Writes records as a COCO results JSON file (float64 values round-trip exactly).

    json.dumps then one write: json.dump's chunked encoder is 3x slower (7 s for 500k records).
    """
    with open(path, "w") as f:
        f.write(json.dumps(records))


def check_image_ids(image_ids, gt_image_ids, gt_json: str) -> None:
    """Raises ValueError unless image_ids holds every id of gt_image_ids exactly once and no other."""
    ids, counts = np.unique(np.asarray(image_ids, np.int64), return_counts=True)
    expected = np.unique(np.asarray(list(gt_image_ids), np.int64))
    twice = ids[counts > 1]
    missing = np.setdiff1d(expected, ids)
    extra = np.setdiff1d(ids, expected)
    if twice.size or missing.size or extra.size:
        raise ValueError(
            f"the evaluated images do not match {gt_json} ({expected.size} images): "
            f"{missing.size} missing (e.g. {missing[:5].tolist()}), {extra.size} not in it "
            f"(e.g. {extra[:5].tolist()}), {twice.size} evaluated more than once (e.g. {twice[:5].tolist()})")


def _backend(backend: str):
    """(COCO class, COCOeval class) of the backend."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster
        return COCO, COCOeval_faster
    raise ValueError(f"unknown COCO eval backend {backend!r} (one of {', '.join(BACKENDS)})")


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """An instances JSON file loaded by a backend, for several scorings (COCOeval only reads it;
    tests/test_coco_eval.py checks that a reused one scores as a fresh one)."""

    path: str  # the file, named in errors
    backend: str
    coco: object  # the backend's COCO object


def load_ground_truth(gt_json: str, backend: str = "faster_coco_eval") -> GroundTruth:
    coco = _backend(backend)[0]
    with contextlib.redirect_stdout(io.StringIO()):
        return GroundTruth(gt_json, backend, coco(gt_json))


def _results(gt: GroundTruth, detections: np.ndarray, image_ids):
    """The results COCO object of a detection array, checked against the ground truth.

    The results object is what the backend's `COCO.loadRes` makes of `to_records(detections)` for
    boxes (the gt images and categories; per record area = w * h, id = 1, 2, ..., iscrowd 0),
    built in one pass instead of loadRes's per-record loop over copies, and without loadRes's
    polygon from each box (box evaluation does not read it).
    """
    coco = gt.coco
    if image_ids is not None:
        check_image_ids(image_ids, coco.getImgIds(), gt.path)
    detections = np.asarray(detections, np.float64).reshape(-1, 7)
    unknown = np.setdiff1d(detections[:, 0].astype(np.int64), np.asarray(coco.getImgIds(), np.int64))
    if unknown.size:
        raise ValueError(f"{gt.path}: {unknown.size} detected image ids are not in the ground truth, "
                         f"e.g. {unknown[:5].tolist()}")
    columns = (detections[:, 0].astype(np.int64).tolist(), detections[:, 6].astype(np.int64).tolist(),
               detections[:, 1:5].tolist(), detections[:, 5].tolist(), (detections[:, 3] * detections[:, 4]).tolist())
    records = [{"image_id": i, "category_id": c, "bbox": b, "score": s, "area": a, "id": k, "iscrowd": 0}
               for k, (i, c, b, s, a) in enumerate(zip(*columns), 1)]
    dt = _backend(gt.backend)[0]()
    dt.dataset = {"images": list(coco.dataset["images"]), "categories": copy.deepcopy(coco.dataset["categories"]),
                  "annotations": records}
    dt.createIndex()
    return dt


def coco_stats(gt, detections: np.ndarray, backend: str = "faster_coco_eval", image_ids=None) -> np.ndarray:
    """The 12 COCOeval bbox statistics (STAT_NAMES order) of a [N, 7] detection array.

    gt: the instances JSON path (loaded with `backend`), or a `load_ground_truth` result (with its
    own backend; loads the file once for several scorings). Scores exactly what
    `to_records(detections)` written to a file and loaded with the backend's `COCO.loadRes` gives. Every image of the ground truth is scored (an
    image without detections counts as all misses); a detection whose image_id is not in it is an
    error, and so, when `image_ids` (the images that went through inference) is given, is any
    difference between it and the images of the ground truth (check_image_ids). Returns float64 [12].
    """
    if isinstance(gt, str):
        gt = load_ground_truth(gt, backend)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = _results(gt, detections, image_ids)
        evaluator = _backend(gt.backend)[1](gt.coco, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats[:12], np.float64)


def format_stats(stats) -> str:
    """The 12 statistics one per line, named as in COCOeval's summary."""
    return "\n".join(f"{name:<12} {value:.4f}" for name, value in zip(STAT_NAMES, stats))
