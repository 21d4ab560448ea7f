"""Box geometry and coding: IoU and conversions by hand, encode/decode by hand and as a round trip."""

import math

import numpy as np

import ssd  # noqa: F401
import tensorflow as tf

from ssd import box_coder, box_ops

VARIANCES = (0.1, 0.2)


def test_iou_by_hand():
    a = tf.constant([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = tf.constant([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0], [2.0, 2.0, 2.0, 2.0]])
    # (0,0,2,2) vs (1,1,3,3): intersection 1, union 4 + 4 - 1 = 7. Disjoint: 0. A zero-area box: 0.
    expected = [[1 / 7, 1.0, 0.0, 0.0], [0.0, 0.25, 0.0, 0.0]]
    np.testing.assert_allclose(box_ops.iou(a, b).numpy(), expected, rtol=1e-6)
    assert box_ops.iou(tf.zeros([0, 4]), b).shape == (0, 4)


def test_corner_center_conversions_are_inverse():
    xyxy = tf.constant([[0.1, 0.2, 0.5, 0.8]])
    np.testing.assert_allclose(box_ops.xyxy_to_cxcywh(xyxy).numpy(), [[0.3, 0.5, 0.4, 0.6]], rtol=1e-6)
    np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(box_ops.xyxy_to_cxcywh(xyxy)).numpy(), xyxy.numpy(), atol=1e-7)


def test_encode_by_hand():
    anchor = tf.constant([[0.5, 0.5, 0.2, 0.4]])  # cx, cy, w, h
    box = tf.constant([[0.4, 0.3, 0.7, 0.9]])  # xyxy: centre (0.55, 0.6), size (0.3, 0.6)
    # dcx = 0.05 / 0.2 / 0.1 = 2.5; dcy = 0.1 / 0.4 / 0.1 = 2.5; dw = dh = log(1.5) / 0.2.
    expected = [[2.5, 2.5, math.log(1.5) / 0.2, math.log(1.5) / 0.2]]
    np.testing.assert_allclose(box_coder.encode(box, anchor, VARIANCES).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(box_coder.decode(tf.constant(expected), anchor, VARIANCES).numpy(), box.numpy(),
                               atol=1e-6)


def test_decode_inverts_encode_on_a_batch():
    rng = np.random.default_rng(0)
    anchors = np.concatenate([rng.uniform(0.1, 0.9, (50, 2)), rng.uniform(0.05, 0.5, (50, 2))], 1).astype(np.float32)
    lo = rng.uniform(0.0, 0.5, (3, 50, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(0.01, 0.5, (3, 50, 2))], -1).astype(np.float32)
    offsets = box_coder.encode(boxes, anchors, VARIANCES)
    assert offsets.shape == (3, 50, 4)
    np.testing.assert_allclose(box_coder.decode(offsets, anchors, VARIANCES).numpy(), boxes, atol=1e-5)
    # An anchor decodes to itself from zero offsets.
    np.testing.assert_allclose(box_coder.decode(tf.zeros([50, 4]), anchors, VARIANCES).numpy(),
                               box_ops.cxcywh_to_xyxy(anchors).numpy(), atol=1e-7)
