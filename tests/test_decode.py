"""JPEG decoding as the reference's (mlcommons/training retired_benchmarks/ssd-v1/ssd/utils.py
COCODetection.__getitem__: `Image.open(path).convert("RGB")`, PIL's libjpeg with its accurate
integer IDCT): ssd.data.pipeline's decodes of coco128 records give PIL's pixels exactly."""

import numpy as np
import tensorflow as tf
from PIL import Image

from ssd.data import pipeline, records


def _records(coco128, count):
    """[(file name, PIL pixels [h,w,3] uint8, parsed record)] of the first `count` coco128 images,
    each record holding the file's bytes, as prepare stores an RGB or grayscale JPEG (unchanged)."""
    out = []
    for path in sorted((coco128 / "train2017").glob("*.jpg"))[:count]:
        want = np.asarray(Image.open(path).convert("RGB"))
        serialized = records.to_example(path.read_bytes(), 0, want.shape[0], want.shape[1],
                                        np.zeros([0, 4]), [], [])
        out.append((path.name, want, records.parse(tf.constant(serialized))))
    return out


def test_decode_image_is_pil(coco128):
    # tf.io.decode_jpeg's default (fast) IDCT differs from PIL on every one of these.
    items = _records(coco128, 100)
    assert "000000000086.jpg" in [name for name, _, _ in items]  # grayscale: 3 equal channels in both
    for name, want, parsed in items:
        np.testing.assert_array_equal(pipeline.decode_image(parsed["jpeg"]).numpy(), want, err_msg=name)


def test_decode_window_is_the_window_of_pil(coco128):
    rng = np.random.default_rng(0)
    for name, want, parsed in _records(coco128, 24):
        height, width = want.shape[:2]
        for _ in range(2):
            h, w = rng.integers(1, height + 1), rng.integers(1, width + 1)
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            window = tf.constant([top, left, h, w], tf.int32)
            got = pipeline.decode_window(parsed, window).numpy()
            np.testing.assert_array_equal(got, want[top:top + h, left:left + w], err_msg=name)
