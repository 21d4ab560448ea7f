"""SSD default boxes in the PyTorch reference's order and convention.

    python -m ssd.anchors --config ssd_large --out boxes.npy

writes the [n, 4] float32 default boxes (normalised cx, cy, w, h) of a config: 15130 at 1200.

The reference (mlcommons/inference `ssd_r34.py`, `DefaultBoxes`): on feature map k of f x f cells,
with scales s_k (fractions of the input, one more than there are maps), the box sizes are, in this
order, (s_k, s_k), (s', s') with s' = sqrt(s_k s_{k+1}), then (s_k sqrt(a), s_k / sqrt(a)) and its
transpose for each aspect ratio a of the map. For each size, the boxes of all cells follow, row by
row (x fastest), centred at ((x + 0.5) / f, (y + 0.5) / f). Maps follow one another. Each of the
four values (cx, cy, w, h) is then clamped to [0, 1] (the reference clamps the values, not the
corners). This order is the model's output order (box index = size * f * f + y * f + x per map).
"""

from __future__ import annotations

import math

import numpy as np

from ssd import architecture, cli


def feature_map_sizes(image_size: int, strides) -> list[int]:
    """The six head output sizes (square maps) for a square input and the reference's `strides`
    ([box head, class head, conv7, conv8, conv9, conv10]), from the layer table ssd.model builds from:
    the trunk, then conv7..conv11 give the six sources; each head's 3x3 conv gives its map.
    """
    if len(strides) != 6:
        raise ValueError(f"strides has 6 entries (box head, class head, conv7..conv10), got {strides}")
    x = image_size
    for window in architecture.trunk_convs():
        x = window.out(x)
    sources = [x]
    for window in architecture.extra_convs(strides):
        x = window.out(x)
        sources.append(x)
    if min(sources) < 1:
        raise ValueError(f"image_size {image_size} is too small for strides {tuple(strides)}: source maps {sources}")
    box_head, class_head = architecture.head_convs(strides)
    sizes = [box_head.out(s) for s in sources]
    if sizes != [class_head.out(s) for s in sources]:
        raise ValueError(f"box head stride {strides[0]} and class head stride {strides[1]} give different maps")
    return sizes


def aspect_ratios(model_cfg) -> list[list[float]]:
    """Per feature map, the aspect ratios of model.aspect_ratios ("2:3" -> [2.0, 3.0])."""
    return [[float(a) for a in text.split(":")] for text in model_cfg.aspect_ratios]


def boxes_per_location(model_cfg) -> list[int]:
    """Default boxes per cell on each map: 2 + 2 per aspect ratio ([4, 6, 6, 6, 4, 4] in the reference)."""
    return [2 + 2 * len(ratios) for ratios in aspect_ratios(model_cfg)]


def default_boxes(model_cfg) -> np.ndarray:
    """[n, 4] float32 (cx, cy, w, h) normalised to the input, in the reference order (see module doc)."""
    sizes = feature_map_sizes(model_cfg.image_size, model_cfg.strides)
    scales = model_cfg.anchor_scales
    boxes = []
    for k, (f, ratios) in enumerate(zip(sizes, aspect_ratios(model_cfg))):
        s = scales[k]
        s_next = math.sqrt(scales[k] * scales[k + 1])
        wh = [(s, s), (s_next, s_next)]
        for a in ratios:
            wh += [(s * math.sqrt(a), s / math.sqrt(a)), (s / math.sqrt(a), s * math.sqrt(a))]
        centers = (np.arange(f, dtype=np.float64) + 0.5) / f
        cy, cx = np.meshgrid(centers, centers, indexing="ij")  # [f, f], x fastest when flattened
        for w, h in wh:
            boxes.append(np.stack([cx.ravel(), cy.ravel(), np.full(f * f, w), np.full(f * f, h)], axis=1))
    return np.clip(np.concatenate(boxes, axis=0), 0.0, 1.0).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    from ssd import config

    parser = cli.Parser("ssd.anchors", __doc__)
    config.add_config_args(parser)
    parser.add_argument("--out", required=True, help="output .npy: [n, 4] float32 cx, cy, w, h")
    args = parser.parse_args(argv)
    cfg = config.config_from_args(parser, args)
    boxes = default_boxes(cfg.model)
    np.save(args.out, boxes)
    maps = feature_map_sizes(cfg.model.image_size, cfg.model.strides)
    print(f"{args.out}: {boxes.shape[0]} default boxes, maps {maps}")


if __name__ == "__main__":
    main()
