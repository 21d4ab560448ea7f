"""Crop, flip and colour jitter (ssd/data/augment.py): golden cases, geometric round trips, and the
colour jitter against torchvision's PIL operations (transcribed in tests/reference_ssd.py)."""

import io
import json
import math

import numpy as np
import reference_ssd
import tensorflow as tf
from PIL import Image, ImageDraw
from stats import chi2_sf

from ssd.config import load_config
from ssd.data import augment, pipeline, records


def _seed(i):
    return tf.constant([7, i], tf.int64)


def test_crop_window_and_crop_boxes_by_hand():
    # A 100 x 200 (h x w) image; the crop is x 0.25..0.75, y 0.5..1.0 -> 50 rows from 50, 100 columns from 50.
    crop = tf.constant([0.25, 0.5, 0.75, 1.0])
    window = augment.crop_window(crop, tf.constant(100), tf.constant(200))
    assert window.numpy().tolist() == [50, 50, 50, 100]
    boxes = tf.constant([[0.3, 0.6, 0.5, 0.8],    # inside: (60..100, 60..80) px -> (0.1..0.5, 0.2..0.6)
                         [0.1, 0.55, 0.2, 0.65],  # centre x 0.15 left of the crop: dropped
                         [0.6, 0.9, 0.8, 1.0]])   # centre x 0.7 inside, clipped at x = 0.75
    out, labels, crowd = augment.crop_boxes(boxes, tf.constant([1, 2, 3]), tf.constant([False, False, True]), crop)
    np.testing.assert_allclose(out.numpy(), [[0.1, 0.2, 0.5, 0.6], [0.7, 0.8, 1.0, 1.0]], atol=1e-6)
    assert labels.numpy().tolist() == [1, 3] and crowd.numpy().tolist() == [False, True]
    # Edges are truncated, as the reference's int(): x 0.2 .. 0.7749 of 10 px -> columns 2 .. 7.
    window = augment.crop_window(tf.constant([0.2, 0.0, 0.7749, 1.0]), tf.constant(10), tf.constant(10))
    assert window.numpy().tolist() == [0, 2, 10, 5]
    # A degenerate crop still gives a 1x1 window inside the image.
    window = augment.crop_window(tf.constant([1.0, 1.0, 1.0, 1.0]), tf.constant(10), tf.constant(10))
    assert window.numpy().tolist() == [9, 9, 1, 1]


def reference_crop_boxes(boxes: np.ndarray, crop, wtot: int, htot: int):
    """The accepted-crop block of SSDCropping.__call__ (mlcommons/training
    retired_benchmarks/ssd-v1/ssd/utils.py), transcribed: boxes [m, 4] normalised xyxy -> (kept boxes
    renormalised to the crop, the kept mask, the pixel crop (left, top, right, bottom) given to PIL)."""
    left, top, right, bottom = (float(v) for v in crop)
    w, h = right - left, bottom - top
    bboxes = boxes.astype(np.float64).copy()
    xc = 0.5 * (bboxes[:, 0] + bboxes[:, 2])
    yc = 0.5 * (bboxes[:, 1] + bboxes[:, 3])
    masks = (xc > left) & (xc < right) & (yc > top) & (yc < bottom)
    bboxes[bboxes[:, 0] < left, 0] = left
    bboxes[bboxes[:, 1] < top, 1] = top
    bboxes[bboxes[:, 2] > right, 2] = right
    bboxes[bboxes[:, 3] > bottom, 3] = bottom
    bboxes = bboxes[masks, :]
    pixel_crop = (int(left * wtot), int(top * htot), int(right * wtot), int(bottom * htot))
    bboxes[:, 0] = (bboxes[:, 0] - left) / w
    bboxes[:, 1] = (bboxes[:, 1] - top) / h
    bboxes[:, 2] = (bboxes[:, 2] - left) / w
    bboxes[:, 3] = (bboxes[:, 3] - top) / h
    return bboxes, masks, pixel_crop


def test_crop_keeps_the_reference_boxes_on_coco128(coco128):
    """Every crop that sample_crop accepts on coco128's boxes keeps exactly the boxes, coordinates and
    pixel window of the reference's code for the same crop, and so never keeps no box."""
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    per_image = {}
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        W, H = sizes[a["image_id"]]
        per_image.setdefault(a["image_id"], []).append([x / W, y / H, (x + w) / W, (y + h) / H])
    kept_counts, cropped = [], 0
    for k, (image_id, rows) in enumerate(sorted(per_image.items())):
        boxes = tf.constant(rows, tf.float32)
        W, H = sizes[image_id]
        for draw in range(12):
            crop, _ = augment.sample_crop(boxes, tf.constant([k, draw], tf.int64))
            if crop.numpy().tolist() == [0.0, 0.0, 1.0, 1.0]:
                continue
            cropped += 1
            out, labels, _ = augment.crop_boxes(boxes, tf.range(len(rows)), tf.zeros(len(rows), tf.bool), crop)
            want, mask, (left, top, right, bottom) = reference_crop_boxes(boxes.numpy(), crop.numpy(), W, H)
            assert labels.numpy().tolist() == np.flatnonzero(mask).tolist(), (image_id, crop.numpy())
            np.testing.assert_allclose(out.numpy(), want, atol=2e-6)
            window = augment.crop_window(crop, tf.constant(H), tf.constant(W)).numpy().tolist()
            assert window == [top, left, bottom - top, right - left], (image_id, crop.numpy())
            kept_counts.append(len(want))
    assert cropped > 300 and min(kept_counts) >= 1


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


JITTER = (0.125, 0.5, 0.5, 0.05)  # brightness, contrast, saturation, hue: the reference's ColorJitter


def test_jitter_params_distribution():
    # torchvision's get_params: a uniform random order of the 4 operations (24 permutations) and
    # uniform factors over [1 - B, 1 + B], [1 - C, 1 + C], [1 - S, 1 + S], [-H, H].
    f = tf.function(lambda s: augment.jitter_params(s, *JITTER))
    draws = [f(_seed(i)) for i in range(2400)]
    orders = np.array([o.numpy() for o, _ in draws])
    factors = np.array([x.numpy() for _, x in draws])
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    _, counts = np.unique(orders @ [64, 16, 4, 1], return_counts=True)
    assert len(counts) == 24
    assert chi2_sf(float(np.sum((counts - 100.0) ** 2 / 100.0)), 23) > 1e-3  # uniform over the 24 orders
    lo, hi = np.array([0.875, 0.5, 0.5, -0.05]), np.array([1.125, 1.5, 1.5, 0.05])
    assert np.all(factors >= lo) and np.all(factors <= hi)
    for k in range(4):
        margin = 0.01 * (hi[k] - lo[k])  # 2400 uniform draws all miss it with probability 0.99^2400 = 3e-11
        assert factors[:, k].min() < lo[k] + margin and factors[:, k].max() > hi[k] - margin
        counts = np.histogram(factors[:, k], np.linspace(lo[k], hi[k], 11))[0]
        assert chi2_sf(float(np.sum((counts - 240.0) ** 2 / 240.0)), 9) > 1e-3  # uniform


def _coco128_images(coco128, n):
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    names = sorted(im["file_name"] for im in data["images"])[::128 // n][:n]
    return [Image.open(coco128 / "train2017" / name).convert("RGB") for name in names]


def _jitter_errors(images, jitter, seed):
    """|jitter - torchvision's PIL ColorJitter| in levels (0..255), all pixels and channels of
    `images`, three random parameter draws each; jitter(pixels [H,W,3] float32, order, factors)."""
    errors = []
    for i, image in enumerate(images):
        pixels = np.asarray(image).astype(np.float32)
        for k in range(3):
            order, factors = augment.jitter_params(tf.constant([seed, 3 * i + k], tf.int64), *JITTER)
            order, factors = order.numpy().tolist(), factors.numpy().tolist()
            expected = np.asarray(reference_ssd.color_jitter(image, order, factors)).astype(np.float32)
            errors.append(np.abs(np.asarray(jitter(pixels, order, factors)) - expected).ravel())
    return np.concatenate(errors)


def _fused_affine(pixels, order, factors):
    """The alternative to exact operations (the project's jitter before issue 11): the four as one
    affine colour map composed in `order` (contrast's mean carried through the map, hue a rotation
    about the grey axis in YIQ), one clip at the end. These four affine maps commute, so the order
    changes nothing here: in the reference it matters through each operation's clip and HSV."""
    gray = np.array([0.299, 0.587, 0.114])
    yiq = np.array([gray, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)])
    matrix, offset = np.eye(3), np.zeros(3)
    mean_rgb = pixels.reshape(-1, 3).mean(0)
    for k in order:
        f = factors[k]
        if k == 0:
            m, o = f * np.eye(3), np.zeros(3)
        elif k == 1:
            m, o = f * np.eye(3), np.full(3, (1 - f) * gray @ (matrix @ mean_rgb + offset))
        elif k == 2:
            m, o = f * np.eye(3) + (1 - f) * np.outer(np.ones(3), gray), np.zeros(3)
        else:
            c, s = math.cos(2 * math.pi * f), math.sin(2 * math.pi * f)
            m, o = np.linalg.inv(yiq) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ yiq, np.zeros(3)
        matrix, offset = m @ matrix, m @ offset + o
    return np.clip(pixels @ matrix.T + offset, 0, 255)


def _summary(e):
    return f"mean {e.mean():.3f}, p99 {np.percentile(e, 99):.1f}, max {e.max():.0f}, exact {np.mean(e == 0):.1%}"


def test_color_jitter_matches_torchvision_on_pil_images(coco128):
    # Tolerance, in levels of 255 over all pixels: mean <= 0.5, 99th percentile <= 4, max <= 30. The
    # error is PIL's 8-bit HSV: H truncated to 1/255 of a turn and torchvision's shift wrapping at
    # 256, not 255, each up to 6 levels on a saturated pixel, which later contrast and saturation
    # factors (up to 1.5 each) can amplify; the other operations are exact.
    images = _coco128_images(coco128, 8)
    ours = _jitter_errors(images, lambda x, o, f: augment.color_jitter(tf.constant(x), o, f).numpy(), seed=1)
    print(f"color_jitter vs torchvision (PIL): {_summary(ours)}")
    assert ours.mean() <= 0.5 and np.percentile(ours, 99) <= 4 and ours.max() <= 30 and np.mean(ours == 0) > 0.75
    # The same comparison rejects one affine map per image (its order is immaterial, see _fused_affine).
    fused = _jitter_errors(images, _fused_affine, seed=1)
    print(f"fused affine map: {_summary(fused)}")
    assert fused.mean() > 0.5 and np.percentile(fused, 99) > 4
    np.testing.assert_allclose(_fused_affine(np.asarray(images[0], np.float32), [3, 1, 0, 2], [0.9, 1.4, 0.6, 0.04]),
                               _fused_affine(np.asarray(images[0], np.float32), [0, 1, 2, 3], [0.9, 1.4, 0.6, 0.04]),
                               atol=1e-6)


def test_each_jitter_operation_at_its_range_ends(coco128):
    # One operation at a time at the ends of its range (where clipping is strongest): brightness,
    # contrast and saturation equal PIL's ImageEnhance to the level; hue within PIL's 8-bit HSV
    # (2 x 6 levels, see above, and rounding).
    for image in _coco128_images(coco128, 4):
        pixels = tf.constant(np.asarray(image), tf.float32)
        for k, ends in enumerate([(0.875, 1.125), (0.5, 1.5), (0.5, 1.5), (-0.05, 0.05)]):
            for factor in ends:
                factors = [1.0, 1.0, 1.0, 0.0]
                factors[k] = factor
                order = [k] + [j for j in range(4) if j != k]  # the others are identities at these factors
                ours = augment.color_jitter(pixels, tf.constant(order), tf.constant(factors)).numpy()
                expected = np.asarray(reference_ssd.ADJUST[k](image, factor)).astype(np.float32)
                error = np.abs(ours - expected)
                if k < 3:
                    assert np.mean(error == 0) > 0.999 and error.max() <= 1, (k, factor, _summary(error))
                else:
                    assert error.mean() < 1.0 and error.max() <= 13, (k, factor, _summary(error))
    # Zero ranges: the identity on integer pixel values; grey stays grey under saturation and hue.
    image = tf.constant(np.random.default_rng(0).integers(0, 256, size=(8, 8, 3)), tf.float32)
    order, factors = augment.jitter_params(_seed(0), 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(augment.color_jitter(image, order, factors).numpy(), image.numpy())
    grey = tf.fill([4, 4, 3], 100.0)
    out = augment.color_jitter(grey, tf.constant([2, 3, 0, 1]), tf.constant([1.0, 1.0, 1.5, 0.05])).numpy()
    np.testing.assert_array_equal(out, grey.numpy())


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
    # 3 px for the resize's blur, plus one source pixel at the largest magnification: as the reference,
    # the boxes follow the sampled crop while the pixels follow its edges truncated to whole pixels,
    # and a crop spans at least 0.3 of the image.
    atol = 3.0 + size / (0.3 * min(int(parsed["width"]), int(parsed["height"])))
    crops = 0
    for i in seeds:
        image, boxes, labels, _ = pipeline.train_example(cfg, None, parsed, _seed(i), encode=False)
        pixels = (image.numpy() * std + mean) * 255.0
        assert boxes.shape[0] == 1, "the only box's centre is inside every crop the sampler accepts"
        found = _find_box(pixels, np.array([255.0, 0.0, 255.0]))
        np.testing.assert_allclose(found, boxes.numpy()[0] * size, atol=atol)
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
