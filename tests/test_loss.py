"""The SSD loss on tiny hand-made cases: smooth L1, hard negative mining, normalisation, no NaN."""

import math

import numpy as np

import ssd  # noqa: F401
import tensorflow as tf

from ssd.loss import ssd_loss


def _ce(logits, label):
    return -logits[label] + math.log(sum(math.exp(v) for v in logits))


def _image():
    """Five default boxes, three classes; box 0 is positive (class 2), 1..4 background.

    Background logit b of the negatives: 0, 1, 2, -1; their CE falls as b rises, so with 3
    negatives per positive, boxes 4, 1, 2 are mined and box 3 (b = 2, the easiest) is not.
    """
    logits = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [2, 0, 0], [-1, 0, 0]], np.float32)
    cls_t = np.array([2, 0, 0, 0, 0], np.int32)
    loc_t = np.zeros([5, 4], np.float32)
    loc_p = np.full([5, 4], 9.0, np.float32)  # background boxes' box predictions do not count
    loc_p[0] = [0.5, -2.0, 0.0, 0.0]  # smooth L1: 0.5 * 0.25 + (2 - 0.5) = 1.625
    return loc_p, logits, loc_t, cls_t


def _batch(*images):
    return [tf.constant(np.stack(parts)) for parts in zip(*images)]


def test_one_image_by_hand():
    loc_p, logits, loc_t, cls_t = _image()
    loss, parts = ssd_loss(*_batch((loc_p, logits, loc_t, cls_t)))
    cls = _ce([0, 0, 0], 2) + _ce([-1, 0, 0], 0) + _ce([0, 0, 0], 0) + _ce([1, 0, 0], 0)
    np.testing.assert_allclose(parts["loc"].numpy(), 1.625, rtol=1e-6)
    np.testing.assert_allclose(parts["cls"].numpy(), cls, rtol=1e-6)
    np.testing.assert_allclose(loss.numpy(), 1.625 + cls, rtol=1e-6)


def test_mined_negatives_alone_get_gradients():
    loc_p, logits, loc_t, cls_t = _batch(_image())
    with tf.GradientTape() as tape:
        tape.watch([loc_p, logits])
        loss, _ = ssd_loss(loc_p, logits, loc_t, cls_t)
    d_loc, d_logits = tape.gradient(loss, [loc_p, logits])
    used = np.abs(d_logits.numpy()[0]).sum(axis=1) > 0
    np.testing.assert_array_equal(used, [True, True, True, False, True])
    np.testing.assert_array_equal(np.abs(d_loc.numpy()[0]).sum(axis=1) > 0, [True, False, False, False, False])


def test_image_without_positives_counts_zero_in_the_batch_mean():
    one = _image()
    loc_p, logits, loc_t, _ = one
    empty = (loc_p, logits, loc_t, np.zeros(5, np.int32))
    single, _ = ssd_loss(*_batch(one))
    pair = _batch(one, empty)
    with tf.GradientTape() as tape:
        tape.watch(pair[:2])
        loss, parts = ssd_loss(*pair)
    grads = tape.gradient(loss, pair[:2])
    np.testing.assert_allclose(loss.numpy(), single.numpy() / 2, rtol=1e-6)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    all_empty, _ = ssd_loss(*_batch(empty, empty))
    assert all_empty.numpy() == 0.0


def test_normalised_by_positives_and_negatives_capped_by_their_count():
    # Boxes 0 and 1 positive: 6 negatives wanted, only 3 exist, so all count; divide by 2.
    loc_p, logits, loc_t, cls_t = _image()
    logits = logits[:4]
    cls_t = np.array([2, 1, 0, 0], np.int32)
    loc_p, loc_t = loc_p[:4].copy(), loc_t[:4]
    loc_p[1] = [0, 0, 0, 0.2]  # smooth L1 0.5 * 0.04 = 0.02
    _, parts = ssd_loss(*_batch((loc_p, logits, loc_t, cls_t)))
    cls = _ce([0, 0, 0], 2) + _ce([0, 0, 0], 1) + _ce([1, 0, 0], 0) + _ce([2, 0, 0], 0)
    np.testing.assert_allclose(parts["cls"].numpy(), cls / 2, rtol=1e-6)
    np.testing.assert_allclose(parts["loc"].numpy(), (1.625 + 0.02) / 2, rtol=1e-6)
