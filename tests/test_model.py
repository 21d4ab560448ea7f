"""The SSD-R34 model: the reference's size and layout, any input size, NCHW, mixed precision."""

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf
import tf_keras

from ssd import anchors, config
from ssd.loss import ssd_loss
from ssd.matching import match
from ssd.model import build_model, reference_layout


def _cfg(*overrides, name="demo"):
    return config.load_config(name, list(overrides)).model


def _images(cfg, n=2, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(n, cfg.image_size, cfg.image_size, 3)), tf.float32)


@pytest.mark.full_model
def test_full_model_has_the_reference_size_and_maps():
    cfg = _cfg(name="ssd_large")
    model = build_model(cfg)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 19_972_534
    assert model.backbone.output.shape.as_list() == [None, 150, 150, 256]
    assert [model.get_layer(f"loc.{i}").output.shape[1] for i in range(6)] == [50, 25, 13, 7, 3, 3]
    assert model.outputs[0].shape.as_list() == [None, 15130, 4]
    assert model.outputs[1].shape.as_list() == [None, 15130, 81]
    # Batch norm trains (as in the reference): bn1, 2 per block in 13 blocks, 2 downsamples.
    bn = [layer for layer in model.backbone.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    assert len(bn) == 29 and all(layer.trainable for layer in bn)


def test_small_model_outputs_one_row_per_default_box():
    cfg = _cfg()
    model = build_model(cfg)
    loc, logits = model(_images(cfg), training=False)
    n = len(anchors.default_boxes(cfg))
    assert loc.shape == (2, n, 4) and logits.shape == (2, n, cfg.num_classes)
    assert loc.dtype == tf.float32 and logits.dtype == tf.float32


def test_other_input_sizes_give_the_maps_of_the_same_strides():
    cfg = _cfg("model.image_size=480", "model.strides=3,3,2,2,2,2")
    model = build_model(cfg)
    sizes = [model.get_layer(f"conf.{i}").output.shape[1] for i in range(6)]
    assert sizes == anchors.feature_map_sizes(480, cfg.strides)
    assert model.outputs[0].shape[1] == len(anchors.default_boxes(cfg))
    with pytest.raises(ValueError, match="too small"):
        build_model(_cfg("model.image_size=300", "model.strides=3,3,2,2,2,2"))


def test_box_index_is_box_times_cells_plus_row_major_cell():
    # Map 1 (19x19 at 300, nd = 6): head channel c * nd + a at cell (y, x) is row
    # offset + a * H * W + y * W + x, column c, of the output (the reference's view of NCHW).
    cfg = _cfg()
    model = build_model(cfg)
    probe = tf_keras.Model(model.input, [model.get_layer("loc.1").output, *model.outputs])
    head, loc, _ = probe(_images(cfg, 1), training=False)
    nd, h, w = 6, 19, 19
    offset = 4 * 38 * 38
    for a, y, x, c in [(0, 0, 0, 0), (5, 3, 17, 2), (2, 18, 1, 3)]:
        np.testing.assert_allclose(loc[0, offset + a * h * w + y * w + x, c], head[0, y, x, c * nd + a], rtol=1e-6)
    py_loc, py_cls = reference_layout(*model(_images(cfg, 1), training=False))
    assert py_loc.shape == (1, 4, 8732) and py_cls.shape == (1, cfg.num_classes, 8732)
    np.testing.assert_array_equal(py_loc.numpy()[0, 2, offset + 5], loc.numpy()[0, offset + 5, 2])


def test_channels_first_computes_the_same():
    nhwc = build_model(_cfg())
    nchw = build_model(_cfg("model.data_format=channels_first"))
    nchw.set_weights(nhwc.get_weights())
    images = _images(_cfg())
    for a, b in zip(nhwc(images, training=False), nchw(images, training=False)):
        # float32 rounding of differently ordered sums, relative to outputs of about 100 at init.
        assert float(tf.reduce_max(tf.abs(a - b))) < 1e-5 * float(tf.reduce_max(tf.abs(a)))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_returns_float32(policy):
    reference = build_model(_cfg())
    images = _images(_cfg(), seed=1)
    expected = reference(images, training=False)
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(_cfg())
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    model.set_weights(reference.get_weights())
    assert model.get_layer("loc.0").compute_dtype == policy.split("_")[1]
    outputs = model(images, training=False)
    for out, ref in zip(outputs, expected):
        assert out.dtype == tf.float32
        scale = float(tf.reduce_max(tf.abs(ref)))
        assert float(tf.reduce_max(tf.abs(out - ref))) < 0.1 * scale


def test_a_training_step_reaches_every_trainable_variable():
    cfg = _cfg()
    model = build_model(cfg)
    boxes = anchors.default_boxes(cfg)
    gt = tf.constant([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.8]])
    loc_t, cls_t = match(gt, tf.constant([1, 3]), tf.constant([False, False]), boxes, cfg.box_variances)

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loc, logits = model(images, training=True)
            loss, _ = ssd_loss(loc, logits, loc_t[None], cls_t[None])
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = step(_images(cfg, 1))
    assert np.isfinite(loss.numpy()) and loss.numpy() > 0
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
