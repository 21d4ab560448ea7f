"""Matching on four default boxes (the quadrants of the image), answers worked by hand, and on random
boxes against the reference's `Encoder.encode` (mlcommons/training retired_benchmarks/ssd-v1/ssd/utils.py)."""

import math

import numpy as np

import reference_ssd
import ssd  # noqa: F401
import tensorflow as tf

from ssd.matching import match

VARIANCES = (0.1, 0.2)
# cx, cy, w, h: quadrants A0 (top left), A1 (top right), A2 (bottom left), A3 (bottom right).
ANCHORS = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]],
                   np.float32)


def _match(boxes, classes, crowd=None, anchors=ANCHORS):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    crowd = np.zeros(len(boxes), bool) if crowd is None else np.array(crowd)
    loc, cls = match(boxes, np.array(classes, np.int32), crowd, anchors, VARIANCES)
    return loc.numpy(), cls.numpy()


def test_threshold_and_forced_best_box():
    # Box 1 is A0 exactly (IoU 1). Box 2 (0.5, 0.5)-(0.8, 0.8) overlaps only A3 with IoU
    # 0.09 / 0.25 = 0.36 < 0.5, yet A3 is its best default box, so A3 is forced positive.
    loc, cls = _match([[0, 0, 0.5, 0.5], [0.5, 0.5, 0.8, 0.8]], [3, 7])
    np.testing.assert_array_equal(cls, [3, 0, 0, 7])
    np.testing.assert_allclose(loc[0], [0, 0, 0, 0], atol=1e-6)
    # Box 2: centre (0.65, 0.65), size 0.3: ((0.65 - 0.75) / 0.5 / 0.1, same, log(0.3 / 0.5) / 0.2 x 2).
    np.testing.assert_allclose(loc[3], [-2, -2, math.log(0.6) / 0.2, math.log(0.6) / 0.2], rtol=1e-5)
    np.testing.assert_array_equal(loc[1:3], 0)


def test_iou_of_exactly_the_threshold_is_negative_unless_forced():
    # The reference keeps IoU > 0.5. The top half: IoU 0.25 / 0.5 = 0.5 (exact in float32) with A0
    # and with A1; A0, the first best, is forced, A1 is not.
    _, cls = _match([[0, 0, 1, 0.5]], [5])
    np.testing.assert_array_equal(cls, [5, 0, 0, 0])
    # A default box half the area of the box, inside it: IoU 0.125 / 0.25 = 0.5; A0 is the forced one.
    anchors = np.array([[0.25, 0.25, 0.5, 0.5], [0.125, 0.25, 0.25, 0.5]], np.float32)
    _, cls = _match([[0, 0, 0.5, 0.5]], [5], anchors=anchors)
    np.testing.assert_array_equal(cls, [5, 0])


def test_forced_match_overrides_a_better_threshold_match():
    # Two default boxes: A0 (0, 0)-(0.5, 0.5) and E (0.05, 0)-(0.55, 0.5). Box 1 is A0: IoU 1 with
    # A0 and 0.225 / 0.275 = 0.82 with E, so E is positive for box 1 by the threshold. Box 2
    # (0.3, 0.1)-(0.55, 0.4) has IoU 0.075 / 0.25 = 0.3 with E and 0.06 / 0.265 = 0.23 with A0: E
    # is its best default box, so E goes to box 2 although box 1 overlaps it more.
    anchors = np.array([[0.25, 0.25, 0.5, 0.5], [0.3, 0.25, 0.5, 0.5]], np.float32)
    _, cls = _match([[0, 0, 0.5, 0.5], [0.3, 0.1, 0.55, 0.4]], [1, 2], anchors=anchors)
    np.testing.assert_array_equal(cls, [1, 2])
    _, cls = _match([[0, 0, 0.5, 0.5]], [1], anchors=anchors)
    np.testing.assert_array_equal(cls, [1, 1])


def test_two_boxes_forcing_the_same_default_box_the_later_wins():
    _, cls = _match([[0, 0, 0.4, 0.4], [0.05, 0.05, 0.45, 0.45]], [1, 2])
    np.testing.assert_array_equal(cls, [2, 0, 0, 0])


def test_crowd_boxes_never_match_nor_force():
    # The crowd box is A2 exactly: A2 stays background; the other box still matches A1.
    _, cls = _match([[0, 0.5, 0.5, 1], [0.5, 0, 1, 0.5]], [4, 6], crowd=[True, False])
    np.testing.assert_array_equal(cls, [0, 6, 0, 0])
    loc, cls = _match([[0, 0.5, 0.5, 1]], [4], crowd=[True])
    np.testing.assert_array_equal(cls, 0)
    np.testing.assert_array_equal(loc, 0)


def test_no_boxes_gives_all_background():
    loc, cls = _match(np.zeros([0, 4]), [])
    assert loc.shape == (4, 4) and cls.shape == (4,)
    np.testing.assert_array_equal(cls, 0)
    np.testing.assert_array_equal(loc, 0)


def test_runs_inside_a_tf_data_map_with_any_number_of_boxes():
    images = [([[0, 0, 0.5, 0.5], [0.5, 0.5, 0.8, 0.8]], [3, 7]), (np.zeros([0, 4]), []), ([[0, 0, 1, 0.5]], [5])]

    def gen():
        for boxes, classes in images:
            yield np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int32), np.zeros(len(classes), bool)

    spec = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.bool))
    ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
    ds = ds.map(lambda b, c, k: match(b, c, k, ANCHORS, VARIANCES))
    for (loc, cls), (boxes, classes) in zip(ds, images):
        eager_loc, eager_cls = _match(boxes, classes)
        np.testing.assert_array_equal(cls.numpy(), eager_cls)
        np.testing.assert_allclose(loc.numpy(), eager_loc, atol=1e-6)


def reference_encode_labels(bboxes_in: np.ndarray, labels_in: np.ndarray, dboxes: np.ndarray, criteria=0.5):
    """utils.py Encoder.encode's labels_out, torch replaced by numpy: bboxes_in [m,4], dboxes [n,4] ltrb."""
    ious = reference_ssd.calc_iou_tensor(bboxes_in, dboxes)
    best_dbox_ious, best_dbox_idx = ious.max(axis=0), ious.argmax(axis=0)
    best_bbox_idx = ious.argmax(axis=1)
    best_dbox_ious[best_bbox_idx] = 2.0  # index_fill_(0, best_bbox_idx, 2.0)
    for idx in range(len(best_bbox_idx)):  # best_dbox_idx[best_bbox_idx[idx]] = idx
        best_dbox_idx[best_bbox_idx[idx]] = idx
    masks = best_dbox_ious > criteria
    labels_out = np.zeros(len(dboxes), np.int64)
    labels_out[masks] = labels_in[best_dbox_idx[masks]]
    return labels_out


def test_labels_are_the_reference_encode_on_random_boxes():
    rng = np.random.default_rng(0)
    centre = rng.uniform(0.05, 0.95, [1000, 2])
    size = rng.uniform(0.05, 0.6, [1000, 2])
    anchors = np.concatenate([centre, size], axis=1).astype(np.float32)
    dboxes = np.concatenate([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], axis=1)
    positives, num_boxes = 0, 0
    for m in (1, 2, 5, 20):
        for _ in range(5):
            lt = rng.uniform(0, 0.8, [m, 2])
            boxes = np.concatenate([lt, lt + rng.uniform(0.02, 1, [m, 2]) * (1 - lt)], axis=1).astype(np.float32)
            labels = rng.integers(1, 81, m).astype(np.int32)
            _, cls = _match(boxes, labels, anchors=anchors)
            want = reference_encode_labels(boxes, labels, dboxes)
            np.testing.assert_array_equal(cls, want)
            positives += int((want > 0).sum())
            num_boxes += m
    assert positives > 2 * num_boxes  # threshold matches, not only the forced ones (at most one a box)
