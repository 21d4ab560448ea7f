"""ssd.optimizer.SGD against torch.optim.SGD (the reference's optimizer), step by step."""

import numpy as np
import torch

import ssd  # noqa: F401
import tensorflow as tf

from ssd.optimizer import SGD
from ssd.schedule import WarmupStepDecay


def _run_both(exclude_bn_bias: bool, steps: int = 7):
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    sched = WarmupStepDecay(0.1, warmup_steps=3, warmup_factor=1, boundaries=[5], decay_factor=0.1)
    w, b = tf.Variable(w0), tf.Variable(b0)
    opt = SGD(sched, momentum=0.9, weight_decay=0.01, exclude_bn_bias=exclude_bn_bias)
    tw, tb = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    groups = [{"params": [tw]}, {"params": [tb], "weight_decay": 0.0 if exclude_bn_bias else 0.01}]
    topt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=0.01)
    for step in range(steps):
        gw, gb = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
        for group in topt.param_groups:
            group["lr"] = float(sched(step))  # the LR changes during warmup and at the boundary
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        topt.step()
        opt.apply_gradients([(tf.constant(gw), w), (tf.constant(gb), b)])
    return (w.numpy(), b.numpy()), (tw.detach().numpy(), tb.detach().numpy()), opt


def test_matches_torch_sgd_with_l2_weight_decay():
    (w, b), (tw, tb), opt = _run_both(exclude_bn_bias=False)
    np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, tb, rtol=1e-5, atol=1e-6)
    assert int(opt.iterations) == 7


def test_exclude_bn_bias_skips_rank1_variables():
    (w, b), (tw, tb), opt = _run_both(exclude_bn_bias=True)
    np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, tb, rtol=1e-5, atol=1e-6)
    assert opt.decays(tf.Variable(tf.zeros([2, 2]))) and not opt.decays(tf.Variable(tf.zeros([2])))


def test_first_step_is_plain_sgd_without_momentum_history():
    w = tf.Variable([1.0, -2.0])
    opt = SGD(0.5, momentum=0.9, weight_decay=0.1)
    opt.apply_gradients([(tf.constant([0.2, 0.4]), w)])
    # g + wd w = [0.3, 0.2]; w - 0.5 x that = [0.85, -2.1]
    np.testing.assert_allclose(w.numpy(), [0.85, -2.1], rtol=1e-6)
    opt.apply_gradients([(tf.constant([0.0, 0.0]), w)])
    # buf = 0.9 [0.3, 0.2] + 0.1 [0.85, -2.1] = [0.355, -0.03]; w -= 0.5 buf
    np.testing.assert_allclose(w.numpy(), [0.85 - 0.1775, -2.1 + 0.015], rtol=1e-6)
