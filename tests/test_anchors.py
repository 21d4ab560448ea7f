"""Default boxes: sizes of the feature maps, the reference order, golden boxes worked by hand."""

import itertools
import math

import numpy as np
import pytest

from ssd import anchors, config


def _model_cfg(name="ssd_large", *overrides):
    return config.load_config(name, list(overrides)).model


def test_feature_map_sizes_of_the_two_reference_variants():
    assert anchors.feature_map_sizes(1200, (3, 3, 2, 2, 2, 2)) == [50, 25, 13, 7, 3, 3]
    assert anchors.feature_map_sizes(300, (1, 1, 2, 2, 2, 1)) == [38, 19, 10, 5, 3, 1]


def test_feature_map_sizes_follow_the_strides_for_other_inputs():
    # 480: trunk 240 -> 120 -> 60; conv7..conv11 30, 15, 8, 3, 1; heads /3 (pad 1): 20, 10, 5, 3, 1, 1.
    assert anchors.feature_map_sizes(480, (3, 3, 2, 2, 2, 2)) == [20, 10, 5, 3, 1, 1]


def test_too_small_an_input_or_unequal_head_strides_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        anchors.feature_map_sizes(300, (3, 3, 2, 2, 2, 2))  # conv11 would need a 3x3 input
    with pytest.raises(ValueError, match="different maps"):
        anchors.feature_map_sizes(1200, (3, 1, 2, 2, 2, 2))


def test_counts_and_first_boxes_at_1200():
    cfg = _model_cfg()
    assert anchors.boxes_per_location(cfg) == [4, 6, 6, 6, 4, 4]
    boxes = anchors.default_boxes(cfg)
    assert boxes.shape == (15130, 4) and boxes.dtype == np.float32
    # docs/reference.md: x varies fastest; the first two boxes of the 50x50 map, size 21/300.
    np.testing.assert_allclose(boxes[0], [0.01, 0.01, 0.07, 0.07], atol=1e-7)
    np.testing.assert_allclose(boxes[1], [0.03, 0.01, 0.07, 0.07], atol=1e-7)
    assert len(anchors.default_boxes(_model_cfg("demo"))) == 8732


def test_golden_boxes_by_hand():
    boxes = anchors.default_boxes(_model_cfg())
    # Map 1 (25x25, 6 sizes) starts after 4 * 50 * 50 = 10000 boxes. Size 4 is the first of the
    # ratio-3 pair: (0.15 sqrt 3, 0.15 / sqrt 3). Cell x = 3, y = 7: centre (3.5 / 25, 7.5 / 25).
    index = 10000 + 4 * 625 + 7 * 25 + 3
    np.testing.assert_allclose(boxes[index], [0.14, 0.3, 0.15 * math.sqrt(3), 0.15 / math.sqrt(3)], rtol=1e-6)
    # The last map (3x3, 4 sizes) starts at 15130 - 36 = 15094. Size 1: sqrt(0.87 * 1.05);
    # size 2: (0.87 sqrt 2, 0.87 / sqrt 2) with the width 1.2304 clamped to 1. Cell x = 2, y = 0.
    s_prime = math.sqrt(0.87 * 1.05)
    np.testing.assert_allclose(boxes[15094 + 1 * 9 + 2], [2.5 / 3, 0.5 / 3, s_prime, s_prime], rtol=1e-6)
    np.testing.assert_allclose(boxes[15094 + 2 * 9 + 2], [2.5 / 3, 0.5 / 3, 1.0, 0.87 / math.sqrt(2)], rtol=1e-6)
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0


def _reference_dboxes_1200():
    """A transcription of the reference's DefaultBoxes loop (mlcommons ssd_r34.py, dboxes_R34_coco)."""
    fig = 1200
    feat = [50, 25, 13, 7, 3, 3]
    steps = [int(fig / f) for f in feat]
    scales = [int(s * fig / 300) for s in [21, 45, 99, 153, 207, 261, 315]]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    out = []
    for idx, f in enumerate(feat):
        fk = fig // steps[idx]
        sk1 = scales[idx] / fig
        sk2 = scales[idx + 1] / fig
        sk3 = math.sqrt(sk1 * sk2)
        sizes = [(sk1, sk1), (sk3, sk3)]
        for a in ratios[idx]:
            w, h = sk1 * math.sqrt(a), sk1 / math.sqrt(a)
            sizes += [(w, h), (h, w)]
        for w, h in sizes:
            for i, j in itertools.product(range(f), range(f)):
                out.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    return np.clip(np.array(out, dtype=np.float32), 0, 1)


def test_same_boxes_as_the_reference_loop():
    np.testing.assert_allclose(anchors.default_boxes(_model_cfg()), _reference_dboxes_1200(), rtol=1e-6, atol=1e-7)


def test_cli_writes_the_boxes(tmp_path):
    out = tmp_path / "boxes.npy"
    anchors.main(["--config", "demo", "--out", str(out)])
    np.testing.assert_array_equal(np.load(out), anchors.default_boxes(_model_cfg("demo")))
