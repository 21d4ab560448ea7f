"""The LR schedule at its exact points: warmup start and end, each decay boundary."""

import numpy as np
import pytest

import ssd  # noqa: F401
from ssd import config, schedule


def lr(s, step):
    return float(s(step).numpy())


def test_exact_points_of_the_ssd_large_recipe():
    cfg = config.load_config("ssd_large")
    t = cfg.train
    global_batch, steps_per_epoch = 256, 117266 // 256  # 458 steps per epoch
    s = schedule.from_config(t, global_batch, steps_per_epoch)
    base = 2.5e-3 * 256 / 32  # 0.02
    assert lr(s, 0) == np.float32(base * 1e-3)  # warmup start: warmup_factor x base
    half = t.warmup_steps // 2
    assert lr(s, half) == np.float32(base * (1e-3 + (1 - 1e-3) * half / t.warmup_steps))
    assert lr(s, t.warmup_steps - 1) < np.float32(base)
    assert lr(s, t.warmup_steps) == np.float32(base)  # warmup end
    b40, b50 = 40 * steps_per_epoch, 50 * steps_per_epoch
    assert lr(s, b40 - 1) == np.float32(base)
    assert lr(s, b40) == np.float32(base * 0.1)
    assert lr(s, b50 - 1) == np.float32(base * 0.1)
    assert lr(s, b50) == np.float32(base * 0.1 * 0.1)
    assert lr(s, 10**7) == np.float32(base * 0.1 * 0.1)


def test_hand_checked_small_schedule():
    # base 1.0, warmup over 4 steps from 0.2: 0.2, 0.4, 0.6, 0.8, then 1.0; x0.5 from step 6.
    s = schedule.WarmupStepDecay(base_lr=1.0, warmup_steps=4, warmup_factor=0.2, boundaries=[6], decay_factor=0.5)
    got = [lr(s, i) for i in range(8)]
    np.testing.assert_allclose(got, [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.5, 0.5], rtol=1e-7)


def test_boundary_inside_warmup_applies_both():
    s = schedule.WarmupStepDecay(base_lr=1.0, warmup_steps=4, warmup_factor=0.2, boundaries=[2], decay_factor=0.1)
    assert lr(s, 1) == pytest.approx(0.4)
    assert lr(s, 2) == pytest.approx(0.06)
    assert lr(s, 4) == pytest.approx(0.1)


def test_no_warmup_and_scaling_rule():
    cfg = config.load_config("demo", ["train.warmup_steps=0", "train.base_lr=0.02", "train.lr_reference_batch=32",
                                      "train.lr_decay_epochs=10"])
    s = schedule.from_config(cfg.train, global_batch=64, steps_per_epoch=10)
    assert lr(s, 0) == np.float32(0.02 * 64 / 32)  # scaled by global batch / reference batch
    assert lr(s, 99) == np.float32(0.02 * 64 / 32)  # boundary epoch 10 = step 100
    assert lr(s, 100) == np.float32(0.02 * 64 / 32 * 0.1)
