"""The SSD loss: smooth L1 on positives + softmax cross-entropy with 3:1 hard negative mining.

As the reference (mlcommons `Loss.forward` in base_model_r34.py / the training SSD): per image, the
negatives (background default boxes) are ranked by their cross-entropy and the top
min(3 x positives, negatives) of them count; the image's loss (box + class) is divided by its number
of positives; an image without positives contributes 0; the batch loss is the mean over images.
The reference caps the negatives at n (all boxes) rather than n - positives, which differs only when
positives exceed a quarter of the boxes.
"""

import tensorflow as tf

NEG_POS_RATIO = 3


def _smooth_l1(x):
    """PyTorch SmoothL1Loss with beta 1: 0.5 x^2 where |x| < 1, else |x| - 0.5."""
    ax = tf.abs(x)
    return tf.where(ax < 1.0, 0.5 * x * x, ax - 0.5)


def ssd_loss(loc_pred, cls_logits, loc_targets, cls_targets):
    """The batch loss.

    Args:
      loc_pred: [N, n, 4] predicted offsets (dcx, dcy, dw, dh).
      cls_logits: [N, n, C] class logits, class 0 background.
      loc_targets: [N, n, 4] encoded targets (ssd.matching.match).
      cls_targets: [N, n] int32 labels, 0 background.

    Returns:
      (loss, {"loc": loc_part, "cls": cls_part}): float32 scalars, loss = loc_part + cls_part.
    """
    loc_pred = tf.cast(loc_pred, tf.float32)
    cls_logits = tf.cast(cls_logits, tf.float32)
    loc_targets = tf.cast(loc_targets, tf.float32)
    cls_targets = tf.cast(cls_targets, tf.int32)

    positive = cls_targets > 0  # [N, n]
    pos_f = tf.cast(positive, tf.float32)
    num_pos = tf.reduce_sum(pos_f, axis=1)  # [N]
    num_boxes = tf.cast(tf.shape(cls_targets)[1], tf.float32)

    loc = tf.reduce_sum(tf.reduce_sum(_smooth_l1(loc_pred - loc_targets), axis=2) * pos_f, axis=1)

    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=cls_targets, logits=cls_logits)  # [N, n]
    # Rank negatives by loss, positives last (CE >= 0 > -1); rank r = position in descending order.
    neg_ce = tf.where(positive, -1.0, tf.stop_gradient(ce))
    order = tf.argsort(neg_ce, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    num_neg = tf.minimum(NEG_POS_RATIO * num_pos, num_boxes - num_pos)  # [N]
    negative = tf.cast(rank, tf.float32) < num_neg[:, None]
    cls = tf.reduce_sum(ce * (pos_f + tf.cast(negative, tf.float32)), axis=1)

    # Per image / positives; 0 (not NaN) without positives.
    scale = tf.math.divide_no_nan(tf.ones_like(num_pos), num_pos)
    loc_part = tf.reduce_mean(loc * scale)
    cls_part = tf.reduce_mean(cls * scale)
    return loc_part + cls_part, {"loc": loc_part, "cls": cls_part}
