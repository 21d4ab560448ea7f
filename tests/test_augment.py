"""Crop, flip and colour jitter (ssd/data/augment.py): golden cases and geometric round trips."""

import io
import json

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from ssd import box_ops
from ssd.config import load_config
from ssd.data import augment, pipeline, records


def _seed(i):
    return tf.constant([7, i], tf.int64)


def test_crop_window_and_crop_boxes_by_hand():
    # A 100 x 200 (h x w) image; the crop is x 0.25..0.75, y 0.5..1.0 -> 50 rows from 50, 100 columns from 50.
    window = augment.crop_window(tf.constant([0.25, 0.5, 0.75, 1.0]), tf.constant(100), tf.constant(200))
    assert window.numpy().tolist() == [50, 50, 50, 100]
    boxes = tf.constant([[0.3, 0.6, 0.5, 0.8],    # inside: (60..100, 60..80) px -> (0.1..0.5, 0.2..0.6)
                         [0.1, 0.55, 0.2, 0.65],  # centre x 0.15 left of the crop: dropped
                         [0.6, 0.9, 0.8, 1.0]])   # centre x 0.7 inside, clipped at x = 0.75
    out, labels, crowd = augment.crop_boxes(boxes, tf.constant([1, 2, 3]), tf.constant([False, False, True]),
                                            window, tf.constant(100), tf.constant(200))
    np.testing.assert_allclose(out.numpy(), [[0.1, 0.2, 0.5, 0.6], [0.7, 0.8, 1.0, 1.0]], atol=1e-6)
    assert labels.numpy().tolist() == [1, 3] and crowd.numpy().tolist() == [False, True]
    # A degenerate crop still gives a 1x1 window inside the image.
    window = augment.crop_window(tf.constant([1.0, 1.0, 1.0, 1.0]), tf.constant(10), tf.constant(10))
    assert window.numpy().tolist() == [9, 9, 1, 1]


def test_sample_crop_meets_its_constraints():
    boxes = tf.constant([[0.1, 0.1, 0.4, 0.5], [0.5, 0.4, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0]])
    crops = {True: 0, False: 0}
    for i in range(60):
        crop, capped = augment.sample_crop(boxes, _seed(i), max_trials=50)
        assert not capped
        cropped = crop.numpy().tolist() != [0.0, 0.0, 1.0, 1.0]
        crops[cropped] += 1
        if cropped:
            w, h = crop[2] - crop[0], crop[3] - crop[1]
            assert 0.3 <= w <= 1.0 and 0.3 <= h <= 1.0 and 0.5 <= w / h <= 2.0
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            assert np.any(np.all((centres > crop[:2]) & (centres < crop[2:]), axis=1))
    assert crops[True] >= 15 and crops[False] >= 5  # both outcomes occur (the distribution: test_crop_distribution)
    # Stateless: the same seed, the same crop.
    a, _ = augment.sample_crop(boxes, _seed(3), 50)
    b, _ = augment.sample_crop(boxes, _seed(3), 50)
    assert a.numpy().tolist() == b.numpy().tolist()


def test_sample_crop_without_boxes_only_keeps_and_its_cap_is_reported():
    # No box: every try fails (no centre inside), so only the "keep" option (1 in 7) ends the loop.
    # With a cap of 16 draws the cap is hit with probability (6/7)^16 = 0.085: capped, no crop.
    f = tf.function(lambda s: augment.sample_crop(tf.zeros([0, 4]), s, 1, max_draws=16))
    results = [f(_seed(i)) for i in range(1000)]
    assert all(c.numpy().tolist() == [0.0, 0.0, 1.0, 1.0] for c, _ in results)
    capped = sum(bool(k) for _, k in results)
    p = (6 / 7) ** 16
    assert abs(capped - 1000 * p) < 4.5 * (1000 * p * (1 - p)) ** 0.5  # binomial, false alarm < 1e-5
    assert not any(bool(augment.sample_crop(tf.zeros([0, 4]), _seed(i))[1]) for i in range(20))  # the real cap


def test_random_flip_by_hand():
    image = tf.reshape(tf.range(6), [1, 3, 2])  # one row, three columns, two channels
    boxes = tf.constant([[0.1, 0.2, 0.4, 0.6]])
    results = {}
    for i in range(20):
        out, flipped = augment.random_flip(image, boxes, _seed(i))
        results[bool(out[0, 0, 0] != 0)] = (out.numpy(), flipped.numpy())
    assert set(results) == {True, False}  # both outcomes occur
    out, flipped = results[True]
    assert out[0, :, 0].tolist() == [4, 2, 0]
    np.testing.assert_allclose(flipped, [[0.6, 0.2, 0.9, 0.6]], atol=1e-6)
    np.testing.assert_allclose(results[False][1], boxes.numpy())


def test_color_jitter():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(0.1, 0.9, size=(8, 8, 3)), tf.float32)
    same = augment.color_jitter(image, _seed(0), 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(same.numpy(), image.numpy(), atol=1e-5)
    # Brightness alone scales every value by one factor in [1 - 0.1, 1 + 0.1].
    ratio = augment.color_jitter(image, _seed(1), 0.1, 0.0, 0.0, 0.0).numpy() / image.numpy()
    assert np.ptp(ratio) < 1e-5 and 0.9 <= ratio.mean() <= 1.1 and abs(ratio.mean() - 1) > 1e-4
    # Contrast alone keeps the mean grey level (no clipping at these values).
    gray = np.array([0.299, 0.587, 0.114])
    out = augment.color_jitter(image, _seed(2), 0.0, 0.5, 0.0, 0.0).numpy()
    assert abs((out @ gray).mean() - (image.numpy() @ gray).mean()) < 1e-5
    # Saturation and hue leave grey pixels grey.
    grey = tf.fill([4, 4, 3], 0.4)
    np.testing.assert_allclose(augment.color_jitter(grey, _seed(3), 0.0, 0.0, 0.5, 0.05).numpy(), 0.4, atol=1e-5)
    # Hue alone turns colours but keeps each pixel's luma (a rotation about the grey axis in YIQ).
    mid = tf.constant(rng.uniform(0.35, 0.65, size=(8, 8, 3)), tf.float32)
    turned = augment.color_jitter(mid, _seed(5), 0.0, 0.0, 0.0, 0.05).numpy()
    np.testing.assert_allclose(turned @ gray, mid.numpy() @ gray, atol=1e-5)
    assert np.abs(turned - mid.numpy()).max() > 1e-3
    # Full jitter stays in [0, 1] and changes colours.
    full = augment.color_jitter(image * 2.0, _seed(4), 0.125, 0.5, 0.5, 0.05).numpy()
    assert full.min() >= 0.0 and full.max() <= 1.0
    assert np.abs(full - np.clip(image.numpy() * 2.0, 0.0, 1.0)).max() > 1e-3


def _find_box(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """xyxy (pixels, exclusive right/bottom) of the pixels close to `colour`."""
    mask = np.abs(image - colour).max(axis=-1) < 40
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _marked_record(jpeg_image: Image.Image, box_px, image_id=1):
    """The image with `box_px` filled in pure magenta, as a record with that one box."""
    draw = ImageDraw.Draw(jpeg_image)
    draw.rectangle([box_px[0], box_px[1], box_px[2] - 1, box_px[3] - 1], fill=(255, 0, 255))
    buf = io.BytesIO()
    jpeg_image.save(buf, format="JPEG", quality=95)
    w, h = jpeg_image.size
    box = np.array([[box_px[0] / w, box_px[1] / h, box_px[2] / w, box_px[3] / h]], np.float32)
    return records.parse(records.to_example(buf.getvalue(), image_id, h, w, box, [1], [0]))


def _check_box_found_again(parsed, cfg, seeds):
    mean, std = np.array(cfg.data.mean), np.array(cfg.data.std)
    size = cfg.model.image_size
    crops = 0
    for i in seeds:
        image, boxes, labels, _ = pipeline.train_example(cfg, None, parsed, _seed(i), encode=False)
        pixels = (image.numpy() * std + mean) * 255.0
        assert boxes.shape[0] == 1, "the only box's centre is inside every crop the sampler accepts"
        found = _find_box(pixels, np.array([255.0, 0.0, 255.0]))
        np.testing.assert_allclose(found, boxes.numpy()[0] * size, atol=3.0)
        crops += not np.allclose(boxes.numpy()[0], parsed["boxes"].numpy()[0], atol=1e-3)
    return crops


def test_boxes_after_crop_and_flip_cover_the_same_object(coco128):
    # Colour jitter off (its ranges 0) so the mark keeps its colour; crop and flip as in training.
    cfg = load_config("demo", ["data.brightness=0", "data.contrast=0", "data.saturation=0", "data.hue=0",
                               "data.crop_max_trials=50"])
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    for im in data["images"][:2] + [im for im in data["images"] if im["file_name"] == "000000000086.jpg"]:
        image = Image.open(coco128 / "train2017" / im["file_name"]).convert("RGB")
        w, h = image.size
        parsed = _marked_record(image, [int(0.3 * w), int(0.35 * h), int(0.6 * w), int(0.7 * h)])
        assert _check_box_found_again(parsed, cfg, range(8)) >= 4


def test_boxes_after_crop_and_flip_cover_the_same_object_generated():
    cfg = load_config("demo", ["data.brightness=0", "data.contrast=0", "data.saturation=0", "data.hue=0",
                               "data.crop_max_trials=50", "model.image_size=200"])
    image = Image.new("RGB", (360, 320), (90, 110, 100))
    parsed = _marked_record(image, [40, 200, 150, 300])
    assert _check_box_found_again(parsed, cfg, range(10)) >= 5
