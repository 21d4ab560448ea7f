"""Assigns ground-truth boxes to default boxes (the SSD matching rule), per image, in the graph.

As the reference's `Encoder.encode` (mlcommons/training retired_benchmarks/ssd-v1/ssd/utils.py): a
default box is positive at IoU > 0.5 (strictly: `best_dbox_ious > criteria`) with its best box, and
each box's best default box is forced positive (the reference sets its IoU to 2.0), the later box
winning one forced twice. Crowd boxes (gt_crowd) neither match nor force.
"""

import tensorflow as tf

from ssd import box_coder, box_ops


def match(gt_boxes, gt_classes, gt_crowd, anchors, variances, iou_threshold=0.5):
    """Targets for one image.

    Args:
      gt_boxes: [m, 4] float32 xyxy normalised; m may be 0.
      gt_classes: [m] int32 labels 1..K.
      gt_crowd: [m] bool, True for crowd boxes.
      anchors: [n, 4] float32 default boxes cxcywh.
      variances: (center, size), e.g. (0.1, 0.2).
      iou_threshold: the IoU above which (strictly) a default box is positive.

    Returns:
      loc_targets: [n, 4] float32 encoded offsets of the assigned box (zeros for background).
      cls_targets: [n] int32, the assigned box's label, 0 for background.
    """
    gt_boxes = tf.reshape(tf.cast(gt_boxes, tf.float32), [-1, 4])
    gt_classes = tf.cast(gt_classes, tf.int32)
    gt_crowd = tf.cast(gt_crowd, tf.bool)
    anchors = tf.cast(anchors, tf.float32)
    n = tf.shape(anchors)[0]
    m = tf.shape(gt_boxes)[0]

    ious = box_ops.iou(gt_boxes, box_ops.cxcywh_to_xyxy(anchors))  # [m, n]
    ious = tf.where(gt_crowd[:, None], -1.0, ious)
    # A sentinel row m (IoU -1, label 0) keeps argmax defined when m is 0 or every box is crowd.
    ious_s = tf.concat([ious, tf.fill([1, n], -1.0)], axis=0)  # [m + 1, n]
    best_iou = tf.reduce_max(ious_s, axis=0)  # [n]
    best_gt = tf.argmax(ious_s, axis=0, output_type=tf.int32)  # [n]

    # Each non-crowd box forces its best default box; the highest box index wins a shared one.
    best_anchor = tf.argmax(ious, axis=1, output_type=tf.int32)  # [m]
    claim = tf.where(gt_crowd, -1, tf.range(m))  # crowd boxes claim nothing
    forced_gt = tf.tensor_scatter_nd_max(tf.fill([n], -1), best_anchor[:, None], claim)  # [n], -1: none
    is_forced = forced_gt >= 0

    assigned = tf.where(is_forced, forced_gt, best_gt)
    positive = tf.logical_or(is_forced, best_iou > iou_threshold)
    classes_s = tf.concat([gt_classes, [0]], axis=0)
    cls_targets = tf.where(positive, tf.gather(classes_s, assigned), 0)

    boxes_s = tf.concat([gt_boxes, [[0.0, 0.0, 1.0, 1.0]]], axis=0)
    encoded = box_coder.encode(tf.gather(boxes_s, assigned), anchors, variances)
    loc_targets = tf.where(positive[:, None], encoded, 0.0)
    return loc_targets, cls_targets
