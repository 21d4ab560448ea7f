"""The LR schedule at its exact points: the MLPerf warmup rule, warmup end, each decay boundary.

Checked step by step against the reference's training loop (mlcommons/training
retired_benchmarks/ssd-v1/ssd/train.py, `train300_mlperf_coco`: the x0.1 decay at the start of each
epoch of `lr_decay_schedule`, then per iteration `lr_warmup`, transcribed in tests/reference_ssd.py).
"""

import numpy as np
import pytest
import reference_ssd
import tensorflow as tf

import ssd  # noqa: F401
from ssd import config, schedule
from ssd.data import pipeline


def lr(s, step):
    return float(s(step).numpy())


@pytest.mark.parametrize("k", [0, 1, 2, 5])
@pytest.mark.parametrize("wb", [1, 7, 650])
def test_warmup_is_the_reference_rule(wb, k):
    base = 0.02
    s = schedule.WarmupStepDecay(base_lr=base, warmup_steps=wb, warmup_factor=k, boundaries=[], decay_factor=0.1)
    for i in sorted({0, 1, wb // 2, wb - 2, wb - 1} & set(range(wb))):
        assert lr(s, i) == pytest.approx(reference_ssd.lr_warmup(wb, i, base, k), rel=1e-6, abs=1e-12), i
    assert lr(s, 0) == pytest.approx(base * (1 - 2.0 ** -k), rel=1e-6, abs=1e-12)  # k = 0: the first update has LR 0
    last = np.float32(reference_ssd.lr_warmup(wb, wb - 1, base, k))  # kept after the warmup: no decay here
    assert lr(s, wb) == last and lr(s, wb + 1000) == last


def reference_lrs(steps_per_epoch: int, epochs: int, wb: int, base: float, k: int, decay_epochs) -> np.ndarray:
    """The LR of each iteration of train300_mlperf_coco (train.py), iteration 0 first: at the start of
    epoch e (0-based) in decay_epochs `current_lr *= 0.1` and the optimizer's LR set to it; then before
    each optimizer step `lr_warmup(optim, wb, iter_num, current_lr, args)`, which sets the LR only
    while iter_num < wb (with args.warmup 0 nothing is set)."""
    current_lr = optim_lr = base
    out, iter_num = [], 0
    for epoch in range(epochs):
        if epoch in decay_epochs:
            current_lr *= 0.1
            optim_lr = current_lr
        for _ in range(steps_per_epoch):
            if iter_num < wb:
                optim_lr = reference_ssd.lr_warmup(wb, iter_num, current_lr, k)
            out.append(optim_lr)
            iter_num += 1
    return np.array(out)


@pytest.mark.parametrize("warmup_steps", [650, 0])
@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("global_batch", [16, 8 * 16, 16 * 16])
def test_every_step_is_the_reference_loop(global_batch, k, warmup_steps):
    t = config.load_config("ssd_large", [f"train.warmup_factor={k}", f"train.warmup_steps={warmup_steps}"]).train
    assert t.lr_decay_factor == 0.1 and t.lr_reference_batch == 32  # the reference's constants
    steps_per_epoch = pipeline.steps_per_epoch(117266, global_batch)
    s = schedule.from_config(t, global_batch, steps_per_epoch)
    epochs = t.lr_decay_epochs[-1] + 1 + -(-1000 // steps_per_epoch)  # 1000 steps past the last decay
    base = 2.5e-3 * (global_batch / 32)  # train.py: args.lr * (global_batch_size / 32)
    want = reference_lrs(steps_per_epoch, epochs, warmup_steps, base, k, t.lr_decay_epochs).astype(np.float32)
    b40, b50 = (e * steps_per_epoch for e in t.lr_decay_epochs)
    steps = np.unique(np.concatenate([np.arange(3 * steps_per_epoch), np.arange(b40 - 1000, b40 + 1000),
                                      np.arange(b50 - 1000, b50 + 1000), [len(want) - 1]]))
    got = s(tf.constant(steps, tf.int64)).numpy()
    np.testing.assert_array_equal(got, want[steps])
    assert got[steps == b40 - 1] == np.float32(base if warmup_steps == 0 else base * (1 - 1 / (650 * 2**k)))
    assert want[b40] == np.float32(base * 0.1) and want[b50] == np.float32(base * 0.1 * 0.1)


def test_exact_points_of_the_ssd_large_recipe():
    cfg = config.load_config("ssd_large")
    t = cfg.train
    assert t.warmup_factor == 0 and t.warmup_steps == 650  # the reference's default k, from LR 0
    global_batch, steps_per_epoch = 256, 117266 // 256  # 458 steps per epoch
    s = schedule.from_config(t, global_batch, steps_per_epoch)
    base = 2.5e-3 * 256 / 32  # 0.02
    assert lr(s, 0) == 0.0
    assert lr(s, 325) == np.float32(base / 2)
    assert lr(s, 649) == np.float32(base * 649 / 650)
    last = np.float32(base * 649 / 650)  # the last warmup LR, kept until the first decay
    assert lr(s, 650) == last
    b40, b50 = 40 * steps_per_epoch, 50 * steps_per_epoch
    assert lr(s, b40 - 1) == last
    assert lr(s, b40) == np.float32(base * 0.1)
    assert lr(s, b50 - 1) == np.float32(base * 0.1)
    assert lr(s, b50) == np.float32(base * 0.1 * 0.1)
    assert lr(s, 10**7) == np.float32(base * 0.1 * 0.1)


def test_hand_checked_small_schedule():
    # base 1.0, warmup over 4 steps with k = 1: from 1 - 1/2, by 1/8 a step, 7/8 kept; x0.5 from step 6.
    s = schedule.WarmupStepDecay(base_lr=1.0, warmup_steps=4, warmup_factor=1, boundaries=[6], decay_factor=0.5)
    got = [lr(s, i) for i in range(8)]
    np.testing.assert_allclose(got, [0.5, 0.625, 0.75, 0.875, 0.875, 0.875, 0.5, 0.5], rtol=1e-7)


def test_boundary_inside_warmup_applies_both():
    # The reference's warmup takes the decayed LR as its base, so the two multiply.
    s = schedule.WarmupStepDecay(base_lr=1.0, warmup_steps=4, warmup_factor=0, boundaries=[2], decay_factor=0.1)
    assert lr(s, 1) == pytest.approx(0.25)
    assert lr(s, 2) == pytest.approx(0.05)
    assert lr(s, 4) == pytest.approx(0.075)  # the last warmup LR 0.1 x 3/4, kept: no later decay


def test_warmup_factor_is_an_integer():
    with pytest.raises(ValueError, match="integer k >= 0"):
        schedule.WarmupStepDecay(base_lr=1.0, warmup_steps=4, warmup_factor=0.1, boundaries=[], decay_factor=0.1)
    with pytest.raises(config.ConfigError, match="train.warmup_factor: expected int"):
        config.load_config("ssd_large", ["train.warmup_factor=0.001"])
    with pytest.raises(config.ConfigError, match="integer k >= 0"):
        config.load_config("ssd_large", ["train.warmup_factor=-1"])


def test_no_warmup_and_scaling_rule():
    cfg = config.load_config("demo", ["train.warmup_steps=0", "train.base_lr=0.02", "train.lr_reference_batch=32",
                                      "train.lr_decay_epochs=10"])
    s = schedule.from_config(cfg.train, global_batch=64, steps_per_epoch=10)
    assert lr(s, 0) == np.float32(0.02 * 64 / 32)  # scaled by global batch / reference batch
    assert lr(s, 99) == np.float32(0.02 * 64 / 32)  # boundary epoch 10 = step 100
    assert lr(s, 100) == np.float32(0.02 * 64 / 32 * 0.1)
