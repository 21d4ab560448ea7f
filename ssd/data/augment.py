"""Training augmentation as pure TF functions of an image and its xyxy boxes (graph-safe, stateless).

Boxes are [m,4] float32 xyxy normalised to [0, 1] of the image they belong to. Randomness comes
only from the `seed` arguments ([2] int, stateless ops), so the same seed gives the same result in
any order and on any thread: the input pipeline derives one seed per example.

The MLPerf reference (mlcommons/training retired_benchmarks/ssd-v1/ssd/utils.py, SSDTransformer)
crops (SSDCropping), flips, resizes and applies torchvision's ColorJitter to the PIL image. The
pipeline does the same in this order: sample_crop -> crop_window (decode only that window with
tf.io.decode_and_crop_jpeg) -> crop_boxes -> random_flip -> resize and color_jitter (at the
smaller of the two resolutions) -> normalisation -> targets.
"""

import functools
import math

import tensorflow as tf

from ssd import box_ops

# The reference's seven crop options (SSDCropping.sample_options), by index: 0 keeps the image;
# 1-5 need IoU > 0.1, 0.3, 0.5, 0.7, 0.9 with every box; 6 has no IoU requirement (-inf).
CROP_MIN_IOUS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, -math.inf)
# Option draws before the sampler gives up and keeps the image. Each draw keeps the image with
# probability 1/7, so the cap is hit with probability <= (6/7)^256, about 7e-18 per image.
MAX_CROP_DRAWS = 256
# Draws evaluated together (one loop iteration): the loop ends within the first block unless all
# 16 draws fail, probability <= (6/7)^16 = 0.085.
_CROP_BLOCK = 16


def sample_crop(boxes: tf.Tensor, seed: tf.Tensor, max_trials: int = 1,
                max_draws: int = MAX_CROP_DRAWS) -> tuple[tf.Tensor, tf.Tensor]:
    """The reference's SSD crop (SSDCropping): (crop [4] float32 xyxy normalised, capped bool).

    boxes: [m,4] xyxy normalised, the boxes the crop must respect (m may be 0). Loop: draw one of
    the 7 options of CROP_MIN_IOUS uniformly; "keep" ends the loop with [0, 0, 1, 1]; otherwise
    try `max_trials` windows: w, h ~ U(0.3, 1), rejected unless 0.5 <= w/h <= 2, left ~ U(0, 1-w),
    top ~ U(0, 1-h), rejected unless IoU(every box, window) > the option's minimum and some box's
    centre lies strictly inside; the first accepted window is the crop. When every try fails, draw
    an option again. After `max_draws` draws (a multiple of 16) without an end: no crop, `capped`
    True. Draws are evaluated 16 at a time; the first that ends the loop decides, as in sequence.
    """
    min_ious = tf.constant(CROP_MIN_IOUS, tf.float32)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # [m,2]
    no_crop = tf.constant([0.0, 0.0, 1.0, 1.0])

    def block(i, done, crop):  # draws 16 i ... 16 i + 15
        s = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, i), 2)
        option = tf.random.stateless_uniform([_CROP_BLOCK], s[0], 0, len(CROP_MIN_IOUS), dtype=tf.int32)
        u = tf.random.stateless_uniform([_CROP_BLOCK, max_trials, 4], s[1])
        w = 0.3 + 0.7 * u[..., 0]  # [16, max_trials]
        h = 0.3 + 0.7 * u[..., 1]
        left = u[..., 2] * (1.0 - w)
        top = u[..., 3] * (1.0 - h)
        windows = tf.stack([left, top, left + w, top + h], axis=-1)  # [16, max_trials, 4]
        iou = box_ops.iou(tf.reshape(windows, [-1, 4]), boxes)  # [16 max_trials, m]
        iou_ok = tf.reshape(tf.reduce_all(iou > tf.repeat(tf.gather(min_ious, option), max_trials)[:, None], axis=1),
                            [_CROP_BLOCK, max_trials])
        flat = tf.reshape(windows, [-1, 1, 4])
        inside = tf.reduce_all((centres[None] > flat[..., :2]) & (centres[None] < flat[..., 2:]), axis=2)  # [16 T, m]
        has_centre = tf.reshape(tf.reduce_any(inside, axis=1), [_CROP_BLOCK, max_trials])
        valid = (w / h >= 0.5) & (w / h <= 2.0) & iou_ok & has_centre  # [16, max_trials]
        keep = tf.equal(option, 0)
        ends = keep | tf.reduce_any(valid, axis=1)  # [16]
        j = tf.argmax(tf.cast(ends, tf.int32), output_type=tf.int32)  # the first draw that ends the loop
        t = tf.argmax(tf.cast(valid[j], tf.int32), output_type=tf.int32)  # its first accepted window
        crop = tf.where(tf.reduce_any(ends) & tf.logical_not(keep[j]), windows[j, t], no_crop)
        return i + 1, tf.reduce_any(ends), crop

    _, done, crop = tf.while_loop(lambda i, done, crop: tf.logical_not(done) & (i < max_draws // _CROP_BLOCK), block,
                                  (tf.constant(0), tf.constant(False), no_crop))
    return crop, tf.logical_not(done)


def crop_window(crop: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """A normalised xyxy crop -> the pixel window [4] int32 (top, left, crop_height, crop_width),
    at least 1x1 and inside the height x width image, as tf.io.decode_and_crop_jpeg takes it. Each
    edge is truncated to a whole pixel, as the reference's `int(left * wtot)` ... `int(bottom * htot)`."""
    size = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    x1, y1, x2, y2 = tf.unstack(tf.cast(tf.floor(crop * size), tf.int32))
    x1 = tf.clip_by_value(x1, 0, width - 1)
    y1 = tf.clip_by_value(y1, 0, height - 1)
    x2 = tf.clip_by_value(x2, x1 + 1, width)
    y2 = tf.clip_by_value(y2, y1 + 1, height)
    return tf.stack([y1, x1, y2 - y1, x2 - x1])


def crop_boxes(boxes: tf.Tensor, labels: tf.Tensor, crowd: tf.Tensor,
               crop: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Normalised xyxy boxes [m, 4] of the image -> boxes of the normalised xyxy `crop` [4].

    As the reference (SSDCropping): keeps the boxes whose centre lies strictly inside the crop as
    sampled, not as rounded to pixels by crop_window (so a crop from sample_crop keeps at least one
    box), clips them to it and renormalises them to it; labels [m] and crowd [m] follow the boxes.
    """
    left_top = tf.tile(crop[:2], [2])
    extent = tf.tile(crop[2:] - crop[:2], [2])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = tf.reduce_all((centres > crop[:2]) & (centres < crop[2:]), axis=1)
    cropped = tf.clip_by_value((boxes - left_top) / extent, 0.0, 1.0)
    return tf.boolean_mask(cropped, keep), tf.boolean_mask(labels, keep), tf.boolean_mask(crowd, keep)


def random_flip(image: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mirrors image [H,W,C] and boxes [m,4] left-right with probability 1/2."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    boxes = tf.where(flip, tf.stack([1.0 - x2, y1, 1.0 - x1, y2], axis=1), boxes)
    return image, boxes


def jitter_params(seed: tf.Tensor, brightness: float, contrast: float, saturation: float,
                  hue: float) -> tuple[tf.Tensor, tf.Tensor]:
    """torchvision's ColorJitter.get_params: (order [4] int32, factors [4] float32).

    order: a uniformly random permutation of the operations 0 brightness, 1 contrast,
    2 saturation, 3 hue. factors (indexed by operation): brightness ~ U[max(0, 1-B), 1+B],
    contrast ~ U[max(0, 1-C), 1+C], saturation ~ U[max(0, 1-S), 1+S], hue ~ U[-H, H] (turns).
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    order = tf.argsort(tf.random.stateless_uniform([4], seeds[0]))  # int32
    lo = tf.constant([max(0.0, 1.0 - brightness), max(0.0, 1.0 - contrast), max(0.0, 1.0 - saturation), -hue])
    hi = tf.constant([1.0 + brightness, 1.0 + contrast, 1.0 + saturation, hue])
    return order, lo + (hi - lo) * tf.random.stateless_uniform([4], seeds[1])


# PIL's "L" conversion weights (ITU-R 601-2 luma in 16-bit fixed point), as ImageEnhance uses them.
_L_WEIGHTS = (19595.0, 38470.0, 7471.0)


def _grey(image: tf.Tensor) -> tf.Tensor:
    """PIL's "L" of image [H,W,3] integer-valued RGB 0..255 -> [H,W,1]: (19595 R + 38470 G + 7471 B
    + 32768) >> 16, the rounded ITU-R 601 luma. Exact in float32: every partial sum is an integer
    < 2^24. Per-channel slices: three times faster than a tensordot with [3] weights on CPU."""
    r, g, b = tf.unstack(image, axis=-1)
    wr, wg, wb = _L_WEIGHTS
    return tf.floor((r * wr + g * wg + b * wb + 32768.0) * (1.0 / 65536.0))[..., None]


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL's Image.blend(degenerate, image, factor) of uint8 images: clipped to 0..255, truncated."""
    return tf.floor(tf.clip_by_value(factor * image + (1.0 - factor) * degenerate, 0.0, 255.0))


def _brightness(image, factor):
    return _blend(tf.zeros([]), image, factor)  # ImageEnhance.Brightness: blend with black


def _contrast(image, factor):
    # ImageEnhance.Contrast: blend with the mean of the "L" image, rounded to an integer.
    mean = tf.reduce_mean(tf.cast(_grey(image), tf.float64))
    return _blend(tf.cast(tf.floor(mean + 0.5), tf.float32), image, factor)


def _saturation(image, factor):
    return _blend(_grey(image), image, factor)  # ImageEnhance.Color: blend with each pixel's "L" grey


def _hue(image, factor):
    # torchvision adds uint8(trunc(255 h)) to PIL's 8-bit H channel: a shift of trunc(255 h) / 255 turns.
    delta = tf.cast(tf.cast(255.0 * factor, tf.int32), tf.float32) / 255.0  # the cast truncates towards 0
    return tf.round(tf.image.adjust_hue(image, delta))


def color_jitter(image: tf.Tensor, order: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    """torchvision's ColorJitter on a PIL image (the reference's): image [H,W,3] float32 RGB 0..255
    -> [H,W,3] float32 integer-valued 0..255; `order` and `factors` from jitter_params.

    The image is rounded first (PIL jitters a uint8 image), then each operation in `order`, as
    torchvision's functional_pil does it: brightness, contrast and saturation blend with black, with
    the rounded mean "L" level and with each pixel's "L" grey (ImageEnhance), clipped and truncated
    to integers as Image.blend does; hue turns H by trunc(255 h) / 255 of a turn. One difference:
    the hue shift runs in float HSV (tf.image.adjust_hue, rounded), not in PIL's 8-bit HSV, whose
    quantisation of H and S moves saturated pixels by a few levels (tests/test_augment.py measures it).
    """
    order = tf.convert_to_tensor(order, tf.int32)
    factors = tf.convert_to_tensor(factors, tf.float32)
    ops = (_brightness, _contrast, _saturation, _hue)

    def apply(position, image):  # one loop, so each operation is traced once
        branches = [functools.partial(op, image, factors[k]) for k, op in enumerate(ops)]
        return position + 1, tf.switch_case(order[position], branches)

    _, image = tf.while_loop(lambda position, _: position < 4, apply, (tf.constant(0), tf.round(image)))
    return image
