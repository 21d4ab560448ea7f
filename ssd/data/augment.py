"""Training augmentation as pure TF functions of an image and its xyxy boxes (graph-safe, stateless).

Boxes are [m,4] float32 xyxy normalised to [0, 1] of the image they belong to. Randomness comes
only from the `seed` argument ([2] int, stateless ops), so the same seed gives the same result in
any order and on any thread: the input pipeline derives one seed per example.

The pipeline applies them in this order: sample_crop -> crop_window (decode only that window with
tf.io.decode_and_crop_jpeg) -> crop_boxes -> random_flip -> resize and colour jitter (one affine
colour map, see jitter_matrix, fused with the normalisation) -> targets.
"""

import math

import numpy as np
import tensorflow as tf

from ssd import box_ops

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
GRAY = (0.299, 0.587, 0.114)
# RGB -> YIQ (its first row is GRAY) and back: a hue shift is a rotation of the (I, Q) plane.
_YIQ = np.array([GRAY, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)], np.float32)
_YIQ_INV = np.linalg.inv(_YIQ).astype(np.float32)


def sample_crop(boxes: tf.Tensor, crowd: tf.Tensor, seed: tf.Tensor, min_ious=(-1.0, 0.1, 0.3, 0.5, 0.7, 0.9),
                max_trials: int = 50) -> tf.Tensor:
    """The SSD IoU-sampled crop: [4] float32 xyxy normalised ([0, 0, 1, 1]: no crop).

    Draws a minimum IoU from `min_ious` (negative: no crop), then up to `max_trials` candidate
    windows of width and height uniform in [0.3, 1] of the image with w/h in [0.5, 2], uniformly
    placed; the first candidate whose IoU with every non-crowd box exceeds the minimum and which
    holds the centre of at least one non-crowd box is the crop. No such candidate: no crop.
    (MLPerf's SSDCropping redraws the minimum IoU instead; this keeps the work bounded.)
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    choice = tf.random.stateless_uniform([], seeds[0], 0, len(min_ious), dtype=tf.int32)
    min_iou = tf.gather(tf.constant(min_ious, tf.float32), choice)
    u = tf.random.stateless_uniform([max_trials, 4], seeds[1])
    w = 0.3 + 0.7 * u[:, 0]
    h = 0.3 + 0.7 * u[:, 1]
    left = u[:, 2] * (1.0 - w)
    top = u[:, 3] * (1.0 - h)
    candidates = tf.stack([left, top, left + w, top + h], axis=1)
    objects = tf.boolean_mask(boxes, tf.logical_not(crowd))
    iou_ok = tf.reduce_all(box_ops.iou(candidates, objects) > min_iou, axis=1)
    centres = (objects[:, :2] + objects[:, 2:]) / 2
    inside = tf.logical_and(tf.reduce_all(centres[None] > candidates[:, None, :2], axis=2),
                            tf.reduce_all(centres[None] < candidates[:, None, 2:], axis=2))
    valid = iou_ok & tf.reduce_any(inside, axis=1) & (w / h >= 0.5) & (w / h <= 2.0)
    first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
    use = tf.logical_and(min_iou >= 0.0, tf.reduce_any(valid))
    return tf.where(use, candidates[first], tf.constant([0.0, 0.0, 1.0, 1.0]))


def crop_window(crop: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """A normalised xyxy crop -> the pixel window [4] int32 (top, left, crop_height, crop_width),
    at least 1x1 and inside the height x width image, as tf.io.decode_and_crop_jpeg takes it."""
    size = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    x1, y1, x2, y2 = tf.unstack(tf.cast(tf.round(crop * size), tf.int32))
    x1 = tf.clip_by_value(x1, 0, width - 1)
    y1 = tf.clip_by_value(y1, 0, height - 1)
    x2 = tf.clip_by_value(x2, x1 + 1, width)
    y2 = tf.clip_by_value(y2, y1 + 1, height)
    return tf.stack([y1, x1, y2 - y1, x2 - x1])


def crop_boxes(boxes: tf.Tensor, labels: tf.Tensor, crowd: tf.Tensor, window: tf.Tensor, height: tf.Tensor,
               width: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Boxes of the height x width image -> boxes of its pixel `window` (from crop_window).

    Keeps the boxes whose centre lies strictly inside the window (as SSD does), clips them to it
    and renormalises them to it; labels [m] and crowd [m] follow the boxes.
    """
    size = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    top, left, h, w = tf.unstack(tf.cast(window, tf.float32))
    offset = tf.stack([left, top, left, top])
    extent = tf.stack([w, h, w, h])
    pixels = boxes * size - offset
    centres = (pixels[:, :2] + pixels[:, 2:]) / 2
    keep = tf.reduce_all((centres > 0.0) & (centres < extent[:2]), axis=1)
    cropped = tf.clip_by_value(pixels / extent, 0.0, 1.0)
    return tf.boolean_mask(cropped, keep), tf.boolean_mask(labels, keep), tf.boolean_mask(crowd, keep)


def random_flip(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirrors image [H,W,C] and boxes [m,4] left-right with probability 1/2."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    boxes = tf.where(flip, tf.stack([1.0 - x2, y1, 1.0 - x1, y2], axis=1), boxes)
    return image, boxes


def jitter_matrix(seed: tf.Tensor, mean_gray: tf.Tensor, brightness: float, contrast: float, saturation: float,
                  hue: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Random colour jitter as one affine map of RGB in [0, 1]: (A [3,3], t [3]), rgb' = A rgb + t.

    Factors as torchvision's ColorJitter, applied in this fixed order: brightness b ~ U[1-B, 1+B]
    (rgb * b), contrast c ~ U[1-C, 1+C] (blend with the mean grey level of the image, `mean_gray`
    of the input in [0, 1]), saturation s ~ U[1-S, 1+S] (blend with the pixel's grey), hue
    h ~ U[-H, H] turns (a rotation about the grey axis in YIQ space, the linear form of a hue
    shift). Each step is affine, so they compose into one matrix; the caller clips once at the end
    (torchvision clips after each step: results differ only where a step saturates).
    """
    u = tf.random.stateless_uniform([4], seed, -1.0, 1.0)
    b = 1.0 + brightness * u[0]
    c = 1.0 + contrast * u[1]
    s = 1.0 + saturation * u[2]
    theta = 2.0 * math.pi * hue * u[3]
    gray = tf.constant([GRAY], tf.float32)  # [1,3]
    sat = s * tf.eye(3) + (1.0 - s) * tf.ones([3, 1]) @ gray
    cos, sin = tf.cos(theta), tf.sin(theta)
    rot = tf.stack([tf.stack([1.0, 0.0, 0.0]), tf.stack([0.0, cos, -sin]), tf.stack([0.0, sin, cos])])
    hue_m = tf.constant(_YIQ_INV) @ rot @ tf.constant(_YIQ)
    matrix = hue_m @ sat * (c * b)
    # Saturation and hue leave a grey level unchanged, so the contrast offset passes through them.
    offset = tf.fill([3], (1.0 - c) * b * mean_gray)
    return matrix, offset


def color_jitter(image: tf.Tensor, seed: tf.Tensor, brightness: float, contrast: float, saturation: float,
                 hue: float) -> tf.Tensor:
    """Random colour jitter of image [H,W,3] float32 RGB in [0, 1] -> [H,W,3] in [0, 1]."""
    mean_gray = tf.reduce_mean(tf.tensordot(image, tf.constant(GRAY), axes=1))
    matrix, offset = jitter_matrix(seed, mean_gray, brightness, contrast, saturation, hue)
    return tf.clip_by_value(tf.tensordot(image, tf.transpose(matrix), axes=1) + offset, 0.0, 1.0)
