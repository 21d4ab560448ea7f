"""SSD box coding: ground-truth boxes <-> offsets relative to default boxes.

    dcx = (cx - acx) / aw / v_c      dw = log(w / aw) / v_s
    dcy = (cy - acy) / ah / v_c      dh = log(h / ah) / v_s

with variances (v_c, v_s), (0.1, 0.2) in the reference: its `Loss._loc_vec` (encode) and
`scale_back_batch` (decode).
"""

import tensorflow as tf

from ssd import box_ops


def encode(boxes_xyxy, anchors_cxcywh, variances):
    """boxes [..., n, 4] xyxy, anchors [n, 4] cxcywh, variances (center, size) -> [..., n, 4] offsets."""
    boxes = box_ops.xyxy_to_cxcywh(boxes_xyxy)
    anchors = tf.cast(anchors_cxcywh, boxes.dtype)
    center = (boxes[..., :2] - anchors[:, :2]) / anchors[:, 2:] / variances[0]
    size = tf.math.log(boxes[..., 2:] / anchors[:, 2:]) / variances[1]
    return tf.concat([center, size], axis=-1)


def decode(offsets, anchors_cxcywh, variances):
    """offsets [..., n, 4] (dcx, dcy, dw, dh), anchors [n, 4] cxcywh -> boxes [..., n, 4] xyxy."""
    offsets = tf.convert_to_tensor(offsets)
    anchors = tf.cast(anchors_cxcywh, offsets.dtype)
    center = offsets[..., :2] * variances[0] * anchors[:, 2:] + anchors[:, :2]
    size = tf.exp(offsets[..., 2:] * variances[1]) * anchors[:, 2:]
    return box_ops.cxcywh_to_xyxy(tf.concat([center, size], axis=-1))
