"""Runs a checkpoint on preprocessed images and saves the raw head outputs in the reference layout.

    python -m ssd.raw_outputs --checkpoint DIR --input images.npy --out outputs.npz

To compare with the PyTorch reference element by element, before any decoding: NCHW images as the
reference takes them in, its `py_location_pred` [N, 4, n] and `py_cls_pred` [N, C, n] out.
"""

from __future__ import annotations

import os

import numpy as np

import tensorflow as tf

from ssd import cli, config
from ssd.checkpoint import restore_model
from ssd.model import reference_layout


def raw_outputs(model, images_nchw: np.ndarray, batch_size: int = 8) -> dict:
    """[N, 3, S, S] float32 -> {"py_location_pred": [N, 4, n], "py_cls_pred": [N, C, n]} float32."""
    locs, logits = [], []
    for i in range(0, len(images_nchw), batch_size):
        batch = tf.transpose(tf.constant(images_nchw[i:i + batch_size], tf.float32), [0, 2, 3, 1])
        loc, cls = reference_layout(*model(batch, training=False))
        locs.append(loc.numpy())
        logits.append(cls.numpy())
    return {"py_location_pred": np.concatenate(locs), "py_cls_pred": np.concatenate(logits)}


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.raw_outputs", __doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory with config.json")
    parser.add_argument("--input", required=True, help=".npy [N, 3, S, S] float32 preprocessed images")
    parser.add_argument("--out", required=True, help=".npz to write")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    cfg = config.read_config(os.path.join(args.checkpoint, "config.json"))
    try:
        model = restore_model(args.checkpoint, cfg)
    except FileNotFoundError as err:
        parser.fail(str(err))
    images = np.load(args.input)
    size = cfg.model.image_size
    if images.ndim != 4 or images.shape[1:] != (3, size, size):
        parser.fail(f"{args.input} has shape {images.shape}, the model takes [N, 3, {size}, {size}]")
    out = raw_outputs(model, images.astype(np.float32), args.batch_size)
    np.savez(args.out, **out)
    print(f"{args.out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in out.items()))


if __name__ == "__main__":
    main()
