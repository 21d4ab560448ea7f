"""Box geometry in TensorFlow: pairwise IoU, the corner <-> center-size conversions, and the xy swap.

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


YX_ORDER = (1, 0, 3, 2)  # xyxy -> (ymin, xmin, ymax, xmax), and back: the permutation is its own inverse


def swap_xy(boxes):
    """[..., 4] boxes xyxy -> (ymin, xmin, ymax, xmax), and (ymin, xmin, ymax, xmax) -> xyxy: the
    export's `detection_bboxes` from ssd.postprocess boxes and back, exactly (a permutation)."""
    return tf.gather(boxes, YX_ORDER, axis=-1)


def iou(a, b):
    """Pairwise intersection over union: a [..., m, 4] xyxy, b [..., n, 4] xyxy -> [..., m, n].

    Leading dimensions are batch dimensions. A pair whose union is empty (two zero-area boxes) has
    IoU 0. Per-coordinate [m, 1] x [1, n] tensors: TF's CPU kernels broadcast these several times
    faster than [m, n, 2] slices, which matters in the input pipeline (15130 default boxes per image).
    """
    a = tf.convert_to_tensor(a)
    b = tf.convert_to_tensor(b, dtype=a.dtype)
    ax1, ay1, ax2, ay2 = (t[..., :, None] for t in tf.unstack(a, 4, axis=-1))  # [..., m, 1]
    bx1, by1, bx2, by2 = (t[..., None, :] for t in tf.unstack(b, 4, axis=-1))  # [..., 1, n]
    iw = tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), 0.0)
    ih = tf.maximum(tf.minimum(ay2, by2) - tf.maximum(ay1, by1), 0.0)
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return tf.math.divide_no_nan(inter, union)
