"""Transcriptions of the MLPerf SSD reference and of torchvision's PIL colour ops, for the fidelity tests.

Reference: mlcommons/training, retired_benchmarks/ssd-v1/ssd/utils.py (`calc_iou_tensor`,
`SSDCropping`) and retired_benchmarks/ssd-v1/ssd/train.py (`lr_warmup`); torchvision
(pytorch/vision) torchvision/transforms/_functional_pil.py (`adjust_brightness`,
`adjust_contrast`, `adjust_saturation`, `adjust_hue`) and transforms.py (`ColorJitter`, which
applies them in the order of a random permutation). torch is replaced by numpy, the module
`random` by a numpy Generator; the control flow is the reference's.
"""

import numpy as np
from PIL import Image, ImageEnhance


def calc_iou_tensor(box1: np.ndarray, box2: np.ndarray) -> np.ndarray:
    """utils.py calc_iou_tensor: box1 [N,4], box2 [M,4] ltrb -> IoU [N,M]."""
    be1 = box1[:, None, :]
    be2 = box2[None, :, :]
    lt = np.maximum(be1[:, :, :2], be2[:, :, :2])
    rb = np.minimum(be1[:, :, 2:], be2[:, :, 2:])
    delta = rb - lt
    delta[delta < 0] = 0
    intersect = delta[:, :, 0] * delta[:, :, 1]
    delta1 = be1[:, :, 2:] - be1[:, :, :2]
    area1 = delta1[:, :, 0] * delta1[:, :, 1]
    delta2 = be2[:, :, 2:] - be2[:, :, :2]
    area2 = delta2[:, :, 0] * delta2[:, :, 1]
    return intersect / (area1 + area2 - intersect)


SAMPLE_OPTIONS = (
    None,  # do nothing
    (0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None),  # min IoU, max IoU
    (None, None),  # no IoU requirements
)


def ssd_cropping(bboxes: np.ndarray, num_cropping_iterations: int, rng: np.random.Generator):
    """SSDCropping.__call__ on the boxes alone: the crop (left, top, right, bottom), or None when the
    image is kept. bboxes: [m,4] ltrb normalised.

    The loop over the num_cropping_iterations tries of a drawn mode is evaluated for all tries at
    once (each try's w, h, left, top drawn as the reference draws them; a try the reference skips
    early is rejected here too) and the first try that passes every check returns, which is what
    the loop returns: the same distribution, fast enough to draw thousands of times.
    """
    while True:
        mode = SAMPLE_OPTIONS[rng.integers(len(SAMPLE_OPTIONS))]  # random.choice(self.sample_options)
        if mode is None:
            return None
        min_iou, max_iou = mode
        min_iou = float("-inf") if min_iou is None else min_iou
        max_iou = float("+inf") if max_iou is None else max_iou
        n = num_cropping_iterations
        w = rng.uniform(0.3, 1.0, n)
        h = rng.uniform(0.3, 1.0, n)
        ratio_ok = ~((w / h < 0.5) | (w / h > 2))
        left = rng.uniform(0, 1.0 - w)
        top = rng.uniform(0, 1.0 - h)
        right = left + w
        bottom = top + h
        ious = calc_iou_tensor(bboxes, np.stack([left, top, right, bottom], axis=1))  # [m, tries]
        iou_ok = ((ious > min_iou) & (ious < max_iou)).all(axis=0)
        xc = 0.5 * (bboxes[:, 0] + bboxes[:, 2])[:, None]
        yc = 0.5 * (bboxes[:, 1] + bboxes[:, 3])[:, None]
        masks = (xc > left) & (xc < right) & (yc > top) & (yc < bottom)  # [m, tries]
        passed = np.flatnonzero(ratio_ok & iou_ok & masks.any(axis=0))
        if len(passed):
            t = passed[0]
            return left[t], top[t], right[t], bottom[t]


def lr_warmup(wb: int, iter_num: int, base_lr: float, warmup_factor: int) -> float:
    """train.py lr_warmup: the LR it sets for iteration iter_num < wb (it sets nothing after)."""
    warmup_step = base_lr / (wb * (2 ** warmup_factor))
    return base_lr - (wb - iter_num) * warmup_step


def adjust_brightness(img: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(factor)


def adjust_contrast(img: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(factor)


def adjust_saturation(img: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Color(img).enhance(factor)


def adjust_hue(img: Image.Image, hue_factor: float) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    # uint8 addition takes care of rotation across boundaries (torchvision: np.int8 then uint8,
    # the shift trunc(255 h) modulo 256)
    np_h += np.int8(hue_factor * 255).astype(np.uint8)
    h = Image.fromarray(np_h)  # mode "L"
    return Image.merge("HSV", (h, s, v)).convert("RGB")


ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(img: Image.Image, fn_idx, factors) -> Image.Image:
    """ColorJitter.forward: the operations in the order fn_idx (0 brightness, 1 contrast,
    2 saturation, 3 hue) with factors[fn_id]."""
    for fn_id in fn_idx:
        img = ADJUST[fn_id](img, factors[fn_id])
    return img
