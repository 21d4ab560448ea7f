"""Post-processing: hand-made logits give the expected boxes, scores, classes and order; the batched
graph agrees with a direct port of the reference's per-image loop."""

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf

from ssd import box_ops
from ssd.config import load_config
from ssd.postprocess import greedy_nms, postprocess

# Default boxes (cx, cy, w, h); with zero offsets they decode to themselves. Dyadic values, so
# the corners and the IoUs below are exact in float32.
ANCHORS = np.array([
    [0.25, 0.25, 0.5, 0.5],      # 0: A = (0, 0, 0.5, 0.5)
    [0.25, 0.125, 0.5, 0.25],    # 1: top half of A: IoU(A) = 0.5 exactly
    [0.75, 0.75, 0.25, 0.25],    # 2: B = (0.625, 0.625, 0.875, 0.875), apart from A
    [0.375, 0.25, 0.5, 0.5],     # 3: A moved right by 0.125: IoU(A) = 0.1875 / 0.3125 = 0.6
    [0.5, 0.5, 1.0, 1.0],        # 4: the whole image: IoU(A) = 0.25
], np.float32)
CORNERS = np.concatenate([ANCHORS[:, :2] - ANCHORS[:, 2:] / 2, ANCHORS[:, :2] + ANCHORS[:, 2:] / 2], axis=1)

# Class probabilities per default box: (background, class 1, class 2, class 3); logits = log(p).
PROBS = np.array([
    [0.05, 0.90, 0.04, 0.01],  # A: class 1 at 0.9
    [0.10, 0.50, 0.39, 0.01],  # class 1 at 0.5: IoU 0.5 with A -> suppressed (>= nms_iou); class 2 kept
    [0.15, 0.80, 0.01, 0.04],  # B: class 1 at 0.8, kept; class 3 at 0.04 <= 0.05 -> dropped
    [0.21, 0.70, 0.045, 0.045],  # IoU 0.6 with A: class 1 suppressed; classes 2, 3 below 0.05
    [0.30, 0.60, 0.06, 0.04],  # IoU 0.25 with A and 1/16 with B: class 1 kept; class 2 at 0.06 kept
], np.float32)


def _config(**eval_overrides):
    overrides = [f"eval.{k}={v}" for k, v in eval_overrides.items()]
    return load_config("demo", ["model.num_classes=4", *overrides])


def _run(cfg, probs=PROBS, anchors=ANCHORS, offsets=None):
    logits = np.log(probs)[None]
    loc = np.zeros((1, len(anchors), 4), np.float32) if offsets is None else offsets[None]
    return {k: v.numpy()[0] for k, v in postprocess(loc, logits, anchors, cfg).items()}


def test_hand_made_logits_give_expected_detections_in_order():
    out = _run(_config(max_detections=8))
    # Expected, best first: (box index, class, score).
    expected = [(0, 1, 0.90), (2, 1, 0.80), (4, 1, 0.60), (1, 2, 0.39), (4, 2, 0.06)]
    assert out["num"] == len(expected)
    np.testing.assert_array_equal(out["classes"], [c for _, c, _ in expected] + [0, 0, 0])
    np.testing.assert_allclose(out["scores"], [s for _, _, s in expected] + [0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(out["boxes"][:5], CORNERS[[i for i, _, _ in expected]])
    np.testing.assert_array_equal(out["boxes"][5:], 0.0)
    assert out["boxes"].dtype == np.float32 and out["classes"].dtype == np.int32


def test_offsets_are_decoded_with_the_variances():
    # dcx = 1 moves the centre by 0.1 x width; dw = 1 scales the width by exp(0.2).
    offsets = np.zeros((5, 4), np.float32)
    offsets[0] = [1.0, 0.0, 1.0, 0.0]
    out = _run(_config(max_detections=8), offsets=offsets)
    cx, w = 0.25 + 0.1 * 0.5, 0.5 * np.exp(0.2)
    np.testing.assert_allclose(out["boxes"][0], [cx - w / 2, 0.0, cx + w / 2, 0.5], rtol=1e-6, atol=1e-7)


def test_pre_nms_top_k_limits_candidates_before_nms():
    # Class 1's two best candidates are A (kept) and box 2 (kept); boxes 4, 1, 3 are never candidates.
    # Class 2's: box 1 (0.39) and box 4 (0.06), both kept.
    out = _run(_config(max_detections=8, pre_nms_top_k=2))
    assert out["num"] == 4
    np.testing.assert_array_equal(out["classes"][:4], [1, 1, 2, 2])
    np.testing.assert_allclose(out["scores"][:4], [0.9, 0.8, 0.39, 0.06], rtol=1e-6)


def test_max_detections_keeps_the_best_over_all_classes():
    out = _run(_config(max_detections=2))
    assert out["num"] == 2 and out["scores"].shape == (2,)
    np.testing.assert_allclose(out["scores"], [0.9, 0.8], rtol=1e-6)


def test_score_threshold_and_nms_iou_come_from_the_config():
    # nms_iou 0.7: box 1 (IoU 0.5) and box 3 (IoU 0.6) survive in class 1; threshold 0.042 admits
    # classes 2 and 3 of box 3 (0.045) but none of the scores 0.04.
    out = _run(_config(max_detections=16, nms_iou=0.7, score_threshold=0.042))
    num = out["num"]
    found = sorted(zip(out["classes"][:num].tolist(), np.round(out["scores"][:num].astype(np.float64), 4).tolist()))
    assert found == sorted([(1, 0.9), (1, 0.8), (1, 0.7), (1, 0.6), (1, 0.5), (2, 0.39), (2, 0.06),
                            (2, 0.045), (3, 0.045)])


def _iou_one(boxes, box):
    """IoU of boxes [m, 4] with one box [4] (xyxy), as the reference's calc_iou_tensor."""
    lt, rb = np.maximum(boxes[:, :2], box[:2]), np.minimum(boxes[:, 2:], box[2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(boxes) + area(box) - inter)


def reference_decode_single(boxes, probs, threshold, iou_threshold, max_num, max_output):
    """A direct numpy port of the reference's `decode_single` loop for one image: boxes [n, 4]
    xyxy, probs [n, C] softmax -> [(score, class, box)] best first."""
    found = []
    for c in range(1, probs.shape[1]):
        mask = probs[:, c] > threshold
        cand_boxes, cand_scores = boxes[mask], probs[mask, c]
        order = np.argsort(cand_scores, kind="stable")[-max_num:]
        while order.size:
            best = order[-1]
            iou = _iou_one(cand_boxes[order], cand_boxes[best])
            order = order[iou < iou_threshold]
            found.append((cand_scores[best], c, tuple(cand_boxes[best])))
    found.sort(key=lambda t: -t[0])
    return found[:max_output]


def test_batched_graph_matches_the_reference_loop_per_image():
    rng = np.random.default_rng(0)
    n, num_classes, batch = 120, 6, 3
    centers = rng.uniform(0.2, 0.8, size=(n, 2))
    anchors = np.concatenate([centers, rng.uniform(0.05, 0.4, size=(n, 2))], axis=1).astype(np.float32)
    offsets = rng.normal(0.0, 1.0, size=(batch, n, 4)).astype(np.float32)
    logits = rng.normal(0.0, 2.0, size=(batch, n, num_classes)).astype(np.float32)
    cfg = load_config("demo", [f"model.num_classes={num_classes}", "eval.pre_nms_top_k=15", "eval.max_detections=40"])
    graph = tf.function(lambda loc, scores: postprocess(loc, scores, anchors, cfg))  # as in evaluation
    out = {k: v.numpy() for k, v in graph(offsets, logits).items()}
    for i in range(batch):
        from ssd import box_coder

        boxes = box_coder.decode(offsets[i], anchors, cfg.model.box_variances).numpy()
        probs = tf.nn.softmax(logits[i]).numpy()
        expected = reference_decode_single(boxes, probs, 0.05, 0.5, 15, 40)
        num = out["num"][i]
        assert num == len(expected) > 10
        np.testing.assert_allclose(out["scores"][i, :num], [s for s, _, _ in expected], rtol=1e-6)
        np.testing.assert_array_equal(out["classes"][i, :num], [c for _, c, _ in expected])
        np.testing.assert_allclose(out["boxes"][i, :num], [b for _, _, b in expected], rtol=1e-6)


def test_each_image_is_independent_of_its_batch():
    rng = np.random.default_rng(1)
    offsets = rng.normal(0.0, 0.5, size=(4, 5, 4)).astype(np.float32)
    logits = rng.normal(0.0, 2.0, size=(4, 5, 4)).astype(np.float32)
    cfg = _config(max_detections=10)
    together = postprocess(offsets, logits, ANCHORS, cfg)
    for i in range(4):
        alone = postprocess(offsets[i:i + 1], logits[i:i + 1], ANCHORS, cfg)
        for key in ("classes", "num"):
            np.testing.assert_array_equal(together[key].numpy()[i], alone[key].numpy()[0])
        for key in ("boxes", "scores"):  # equal up to float rounding of the vectorised maths
            np.testing.assert_allclose(together[key].numpy()[i], alone[key].numpy()[0], rtol=1e-6, atol=1e-7)


def test_no_detection_above_threshold_gives_zero_rows():
    probs = np.tile([[0.97, 0.01, 0.01, 0.01]], (5, 1)).astype(np.float32)
    out = _run(_config(max_detections=4), probs=probs)
    assert out["num"] == 0
    assert not out["scores"].any() and not out["classes"].any() and not out["boxes"].any()


def test_batched_iou_matches_per_set_iou():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 0.6, size=(2, 7, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 0.4, size=(2, 7, 2))], axis=-1).astype(np.float32)
    boxes[0, 3] = [0.2, 0.2, 0.2, 0.5]  # zero area
    batched = box_ops.iou(boxes, boxes).numpy()  # the NMS overlaps: every pair within each set
    for b in range(2):
        np.testing.assert_allclose(batched[b], box_ops.iou(boxes[b], boxes[b]).numpy(), rtol=1e-6)
    assert batched[0, 3, 3] == 0.0


@pytest.mark.parametrize("threshold, expected", [(0.5, [True, False, True, False]), (0.7, [True, True, True, False])])
def test_greedy_nms_suppresses_at_or_above_the_threshold(threshold, expected):
    boxes = CORNERS[[0, 1, 2, 3]]  # IoU with box 0: 0.5, 0, 0.6; box 3 is also invalid below
    valid = np.array([True, True, True, False])
    keep = greedy_nms(tf.constant(boxes), tf.constant(valid), threshold).numpy()
    np.testing.assert_array_equal(keep, expected)


def test_full_size_shapes_and_limits():
    # ssd_large: 15130 default boxes, 81 classes; random logits put many boxes above the threshold.
    cfg = load_config("ssd_large")
    from ssd.anchors import default_boxes

    anchors = default_boxes(cfg.model)
    rng = np.random.default_rng(3)
    loc = rng.normal(0.0, 1.0, size=(2, len(anchors), 4)).astype(np.float32)
    logits = rng.normal(0.0, 3.0, size=(2, len(anchors), 81)).astype(np.float32)
    out = {k: v.numpy() for k, v in postprocess(loc, logits, anchors, cfg).items()}
    assert out["boxes"].shape == (2, 200, 4) and out["classes"].shape == (2, 200)
    np.testing.assert_array_equal(out["num"], 200)
    assert out["classes"].min() >= 1 and out["classes"].max() <= 80
    assert (np.diff(out["scores"], axis=1) <= 0).all() and out["scores"].min() > 0.05
