"""Box geometry in TensorFlow: pairwise IoU and the corner <-> center-size conversions.

Corner form `xyxy` is (x1, y1, x2, y2) = (left, top, right, bottom); center-size form `cxcywh` is
(center x, center y, width, height). Both in the same units (normalised to [0, 1] in this project).
"""

import tensorflow as tf


def xyxy_to_cxcywh(boxes):
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (cx, cy, w, h)."""
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes):
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    cx, cy, w, h = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5], axis=-1)


def iou(a, b):
    """Pairwise intersection over union: a [m, 4] xyxy, b [n, 4] xyxy -> [m, n].

    A pair whose union is empty (two zero-area boxes) has IoU 0.
    """
    a = tf.convert_to_tensor(a)
    b = tf.convert_to_tensor(b, dtype=a.dtype)
    lt = tf.maximum(a[:, None, :2], b[None, :, :2])  # [m, n, 2]
    rb = tf.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return tf.math.divide_no_nan(inter, union)
