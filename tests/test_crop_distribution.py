"""The crop sampler (ssd.data.augment.sample_crop) against the MLPerf reference's, as distributions.

The reference's SSDCropping (transcribed in tests/reference_ssd.py from mlcommons/training
retired_benchmarks/ssd-v1/ssd/utils.py) and the project's sampler are each drawn 40 times per image
on the boxes of coco128's 126 annotated train images (normalised xyxy, crowd boxes included, as the
reference trains on them), at max_samples 1 and 50. Three statistics must agree:

- the share of uncropped draws: two-proportion z-test;
- the histogram of crop areas (w x h) of the cropped draws, 9 bins: chi-square homogeneity, 8 df;
- the crop frequency of each image: the sum over images of the 2x2 chi-squares, one df per image.

Each must not reject at false-alarm rate ALPHA = 1e-3 (six statistics per sampler: a false alarm
in at most 0.6% of seeds); the seeds are fixed, so the test is reproducible. The same comparison
rejects a transcription of the sampler this project had before (6 options without the
unconstrained one, no redraw: the image stays uncropped when the tries fail, crowd boxes ignored).
"""

import json
import math

import numpy as np
import pytest
import reference_ssd
import tensorflow as tf
from stats import chi2_sf

from ssd.data import augment, prepare

ALPHA = 1e-3
DRAWS = 40  # per image
AREA_EDGES = np.array([0.09, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])  # w, h in [0.3, 1]: area >= 0.09


def test_chi2_sf_by_hand():
    assert chi2_sf(2.0, 2) == pytest.approx(math.exp(-1.0))  # chi2(2) is exponential with mean 2
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)  # the textbook 95% points
    assert chi2_sf(7.814727903251178, 3) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(15.507313055865453, 8) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(124.34211340400491, 100) == pytest.approx(0.05, rel=1e-9)


@pytest.fixture(scope="module")
def coco128_boxes(coco128):
    """[126] arrays [m,4] xyxy normalised (float64) and [126] crowd flags, as prepare writes them."""
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    items, _, _, _ = prepare.plan(data, "train")
    return [it["boxes"].astype(np.float64) for it in items], [it["crowd"].astype(bool) for it in items]


def draw_project(boxes: list[np.ndarray], max_trials: int, seed: int) -> np.ndarray:
    """DRAWS crops per image from augment.sample_crop in a tf.data map: [images x DRAWS, 4] xyxy."""
    counts = [len(b) for b in boxes]
    padded = np.zeros([len(boxes), max(counts), 4], np.float32)
    for i, b in enumerate(boxes):
        padded[i, :len(b)] = b
    padded, counts = tf.constant(padded), tf.constant(counts)
    ids = tf.data.Dataset.range(len(boxes) * DRAWS)

    def crop(k):
        i = tf.cast(k // DRAWS, tf.int32)
        crop, capped = augment.sample_crop(padded[i, :counts[i]], tf.stack([tf.constant(seed, tf.int64), k]),
                                           max_trials)
        return crop, capped

    crops, capped = next(iter(ids.map(crop, num_parallel_calls=tf.data.AUTOTUNE).batch(len(boxes) * DRAWS)))
    assert not np.any(capped.numpy()), "the sampler hit its cap on redraws"
    return crops.numpy()


def draw_reference(boxes: list[np.ndarray], max_trials: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for b in boxes:
        for _ in range(DRAWS):
            crop = reference_ssd.ssd_cropping(b, max_trials, rng)
            out.append([0.0, 0.0, 1.0, 1.0] if crop is None else crop)
    return np.array(out)


def draw_old(boxes: list[np.ndarray], crowd: list[np.ndarray], max_trials: int, seed: int) -> np.ndarray:
    """The sampler before issue 11: min IoU drawn from (-1 = keep, 0.1, 0.3, 0.5, 0.7, 0.9), then up
    to max_trials windows checked against the non-crowd boxes; none accepted: no crop, no redraw."""
    rng = np.random.default_rng(seed)
    out = []
    for b, c in zip(boxes, crowd):
        objects = b[~c]
        for _ in range(DRAWS):
            min_iou = (-1.0, 0.1, 0.3, 0.5, 0.7, 0.9)[rng.integers(6)]
            w, h = rng.uniform(0.3, 1.0, max_trials), rng.uniform(0.3, 1.0, max_trials)
            left, top = rng.uniform(0, 1.0 - w), rng.uniform(0, 1.0 - h)
            windows = np.stack([left, top, left + w, top + h], axis=1)
            iou_ok = (reference_ssd.calc_iou_tensor(objects, windows) > min_iou).all(axis=0)
            xc, yc = ((objects[:, 0] + objects[:, 2]) / 2)[:, None], ((objects[:, 1] + objects[:, 3]) / 2)[:, None]
            inside = ((xc > left) & (xc < left + w) & (yc > top) & (yc < top + h)).any(axis=0)
            valid = np.flatnonzero(iou_ok & inside & (w / h >= 0.5) & (w / h <= 2.0))
            out.append(windows[valid[0]] if min_iou >= 0 and len(valid) else [0.0, 0.0, 1.0, 1.0])
    return np.array(out)


def compare(a: np.ndarray, b: np.ndarray, num_images: int) -> dict:
    """P-values of the three statistics for crops a and b ([num_images x DRAWS, 4] each, image-major)."""
    cropped_a = ~np.all(a == [0.0, 0.0, 1.0, 1.0], axis=1)
    cropped_b = ~np.all(b == [0.0, 0.0, 1.0, 1.0], axis=1)
    n = len(a)
    pa, pb = cropped_a.mean(), cropped_b.mean()
    pooled = (pa + pb) / 2
    z = (pa - pb) / math.sqrt(pooled * (1 - pooled) * 2 / n)

    def areas(crops, cropped):
        w, h = crops[cropped, 2] - crops[cropped, 0], crops[cropped, 3] - crops[cropped, 1]
        return np.histogram(w * h, AREA_EDGES)[0]

    hist = np.stack([areas(a, cropped_a), areas(b, cropped_b)]).astype(np.float64)  # [2, bins]
    expected = hist.sum(1, keepdims=True) * hist.sum(0, keepdims=True) / hist.sum()
    area_x2 = float(np.sum((hist - expected) ** 2 / expected))

    per_image = np.stack([cropped_a.reshape(num_images, DRAWS).sum(1), cropped_b.reshape(num_images, DRAWS).sum(1)])
    table = np.stack([per_image, DRAWS - per_image], axis=-1).astype(np.float64)  # [2 samplers, images, 2]
    expected = table.sum(0, keepdims=True) * table.sum(2, keepdims=True) / (2 * DRAWS)
    defined = np.all(table.sum(0) > 0, axis=1)  # images cropped in some draws and kept in others
    image_x2 = float(np.sum(((table - expected) ** 2 / np.where(expected > 0, expected, 1))[:, defined]))
    return {
        "uncropped": (1 - pa, 1 - pb),
        "p_uncropped": math.erfc(abs(z) / math.sqrt(2)),
        "p_area": chi2_sf(area_x2, len(AREA_EDGES) - 2),
        "p_per_image": chi2_sf(image_x2, int(defined.sum())),
        "never_cropped": (int(np.sum(per_image[0] == 0)), int(np.sum(per_image[1] == 0))),
    }


@pytest.mark.parametrize("max_trials", [1, 50])
def test_sampler_matches_the_reference_distribution(coco128_boxes, max_trials):
    boxes, crowd = coco128_boxes
    reference = draw_reference(boxes, max_trials, seed=11)
    result = compare(draw_project(boxes, max_trials, seed=11), reference, len(boxes))
    print(f"max_samples {max_trials}: {result}")
    assert result["p_uncropped"] > ALPHA, result
    assert result["p_area"] > ALPHA, result
    assert result["p_per_image"] > ALPHA, result
    # The reference crops about half of all draws, and crops every image sometimes.
    assert 0.35 < result["uncropped"][1] < 0.6 and result["never_cropped"][1] == 0, result

    # The same comparison rejects the sampler this project had before.
    old = compare(draw_old(boxes, crowd, max_trials, seed=11), reference, len(boxes))
    print(f"old sampler, max_samples {max_trials}: {old}")
    assert old["p_uncropped"] < ALPHA and old["p_per_image"] < ALPHA, old
