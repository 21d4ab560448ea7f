"""COCO scoring: ground truth fed back scores AP 1; a perturbation scores exactly what pycocotools
gives on the same JSON file; detection arrays are in original-image pixels and COCO ids."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssd import coco_eval


@pytest.fixture(scope="module")
def gt(coco128):
    path = coco128 / "annotations" / "instances_train2017.json"
    with open(path) as f:
        return str(path), json.load(f)


def _as_outputs(data, perturb=None, rows=128):
    """The ground truth of `data` in ssd.postprocess's padded layout (normalised xyxy, labels 1..K).

    perturb(rng, xywh [m, 4] pixels, scores [m], category ids [m]) -> the same three, changed.
    """
    category_ids = sorted(c["id"] for c in data["categories"])
    label = {c: i + 1 for i, c in enumerate(category_ids)}
    images = sorted(data["images"], key=lambda im: im["id"])
    rng = np.random.default_rng(0)
    out = {"image_ids": [], "orig_sizes": [], "boxes": [], "scores": [], "classes": [], "num": []}
    for im in images:
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"] and not a["iscrowd"]]
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        scores = np.linspace(1.0, 0.5, len(anns))
        cats = np.array([a["category_id"] for a in anns], np.int64)
        if perturb is not None:
            xywh, scores, cats = perturb(rng, xywh, scores, cats)
        w, h, m = im["width"], im["height"], len(cats)
        boxes = np.zeros((rows, 4))
        boxes[:m] = np.stack([xywh[:, 0] / w, xywh[:, 1] / h, (xywh[:, 0] + xywh[:, 2]) / w,
                                      (xywh[:, 1] + xywh[:, 3]) / h], axis=1)
        classes = np.zeros(rows, np.int32)
        classes[:m] = [label[c] for c in cats]
        out["image_ids"].append(im["id"])
        out["orig_sizes"].append((h, w))
        out["boxes"].append(boxes)
        out["scores"].append(np.pad(scores, (0, rows - m)))
        out["classes"].append(classes)
        out["num"].append(m)
    return {k: np.array(v) for k, v in out.items()}, category_ids


@pytest.mark.parametrize("backend", coco_eval.BACKENDS)
def test_ground_truth_as_detections_scores_ap_one(gt, backend):
    path, data = gt
    outputs, category_ids = _as_outputs(data)
    detections = coco_eval.detection_array(category_ids=category_ids, **outputs)
    assert len(detections) == sum(not a["iscrowd"] for a in data["annotations"])
    stats = coco_eval.coco_stats(path, detections, backend, image_ids=outputs["image_ids"])
    assert stats.shape == (12,)
    np.testing.assert_array_equal(stats[:6], 1.0)  # AP at every IoU and every area range
    assert stats[8] == 1.0  # AR@100: every object found


def _perturb(rng, xywh, scores, cats):
    """Jitter every box by up to 15% of its size, drop every 4th object, add a false person."""
    keep = np.arange(len(xywh)) % 4 != 3
    xywh = xywh[keep] + rng.uniform(-0.15, 0.15, size=(keep.sum(), 4)) * np.tile(xywh[keep, 2:], 2)
    return (np.concatenate([xywh, [[5.0, 5.0, 40.0, 30.0]]]), np.concatenate([scores[keep], [0.7]]),
            np.concatenate([cats[keep], [1]]))


def test_perturbation_scores_exactly_as_pycocotools_on_the_json(gt, tmp_path):
    path, data = gt
    outputs, category_ids = _as_outputs(data, _perturb)
    detections = coco_eval.detection_array(category_ids=category_ids, **outputs)
    json_path = tmp_path / "detections.json"
    coco_eval.write_records(coco_eval.to_records(detections), str(json_path))

    with contextlib.redirect_stdout(io.StringIO()):
        reference_gt = COCO(path)
        evaluator = COCOeval(reference_gt, reference_gt.loadRes(str(json_path)), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = coco_eval.coco_stats(path, detections, "pycocotools")
    np.testing.assert_array_equal(ours, evaluator.stats)
    assert 0.2 < ours[0] < 0.9  # a real perturbation: neither perfect nor lost
    # faster-coco-eval, the default backend: the same 12 numbers. Its C++ accumulation divides and
    # sums in another order, so here 2 of the 12 (AP medium, AP large) differ in the last bit
    # (5.6e-17): equal to 15 significant digits, the same at any precision the project prints.
    fast = coco_eval.coco_stats(path, detections)
    np.testing.assert_allclose(fast, ours, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(np.round(fast, 15), np.round(ours, 15))


@pytest.mark.parametrize("backend", coco_eval.BACKENDS)
def test_ground_truth_loaded_once_scores_as_a_fresh_load(gt, backend):
    """The trainer's scorer loads the ground truth once and scores every evaluation against it."""
    path, data = gt
    loaded = coco_eval.load_ground_truth(path, backend)
    for perturb in (_perturb, None, _perturb):
        outputs, category_ids = _as_outputs(data, perturb)
        detections = coco_eval.detection_array(category_ids=category_ids, **outputs)
        np.testing.assert_array_equal(coco_eval.coco_stats(loaded, detections, image_ids=outputs["image_ids"]),
                                      coco_eval.coco_stats(path, detections, backend))


def test_detection_array_is_in_original_pixels_with_coco_ids():
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, 0] = [0.1, 0.2, 0.5, 0.6]
    boxes[0, 1] = [0.0, 0.0, 1.0, 1.0]
    boxes[0, 2] = [0.3, 0.3, 0.4, 0.4]  # past num: not a detection
    boxes[1, 0] = [0.5, 0.25, 0.75, 1.0]
    detections = coco_eval.detection_array(
        image_ids=[42, 7], orig_sizes=[[200, 100], [40, 80]], boxes=boxes,
        scores=[[0.9, 0.25, 0.5], [0.75, 0.0, 0.0]], classes=[[2, 1, 1], [3, 0, 0]], num=[2, 1],
        category_ids=[5, 17, 90])
    np.testing.assert_allclose(detections, [
        [42, 10.0, 40.0, 40.0, 80.0, 0.9, 17],
        [42, 0.0, 0.0, 100.0, 200.0, 0.25, 5],
        [7, 40.0, 10.0, 20.0, 30.0, 0.75, 90],
    ], rtol=1e-6)
    assert coco_eval.to_records(detections)[2] == {
        "image_id": 7, "category_id": 90, "bbox": [40.0, 10.0, 20.0, 30.0], "score": 0.75}


def test_detection_array_rejects_labels_outside_the_categories():
    with pytest.raises(ValueError, match="labels must be in 1..2"):
        coco_eval.detection_array([1], [[10, 10]], np.zeros((1, 1, 4)), [[0.5]], [[3]], [1], [4, 9])


def test_records_round_trip_through_the_json_file(tmp_path):
    detections = np.array([[3, 1.5, 2.25, 10.123456789, 4.0, 0.123456789012, 18]])
    records = coco_eval.to_records(detections)
    coco_eval.write_records(records, str(tmp_path / "d.json"))
    assert json.loads((tmp_path / "d.json").read_text()) == records


@pytest.mark.parametrize("ids, message", [
    ("missing", "1 missing"), ("twice", "1 evaluated more than once"), ("extra", "1 not in it")])
def test_scored_image_set_must_equal_the_annotation_file(gt, ids, message):
    path, data = gt
    all_ids = sorted(im["id"] for im in data["images"])
    image_ids = {"missing": all_ids[1:], "twice": all_ids + all_ids[:1], "extra": all_ids + [10**9]}[ids]
    for loaded in (path, coco_eval.load_ground_truth(path)):  # the error names the file either way
        with pytest.raises(ValueError, match=f"{path}.*{message}"):
            coco_eval.coco_stats(loaded, np.zeros((0, 7)), "pycocotools", image_ids=image_ids)


def test_detection_of_an_unknown_image_is_an_error(gt):
    path, _ = gt
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_eval.coco_stats(path, np.array([[10**9, 1, 1, 5, 5, 0.9, 1]]), "pycocotools")


def test_no_detections_scores_zero_with_both_backends(gt):
    path, _ = gt
    stats = [coco_eval.coco_stats(path, np.zeros((0, 7)), b) for b in coco_eval.BACKENDS]
    np.testing.assert_array_equal(stats[0], stats[1])
    np.testing.assert_array_equal(stats[0], 0.0)  # coco128 has objects of every area range


def test_unknown_backend_is_an_error(gt):
    with pytest.raises(ValueError, match="unknown COCO eval backend"):
        coco_eval.coco_stats(gt[0], np.zeros((0, 7)), "detectron")
