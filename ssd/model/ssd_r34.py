"""SSD-ResNet34: the trunk, five extra layers and six 3x3 heads (docs/reference.md, mlcommons `ssd_r34.py`).

Extra layers: 1x1 conv + ReLU + 3x3 conv + ReLU, with bias, no BN (channels and pads: ssd.architecture).
Layers carry the reference's module names, so its weights import by name (ssd.import_weights).
Each head's output is reshaped so the boxes come in the reference order, the order of
ssd.anchors.default_boxes (docs/interfaces.md); `reference_layout` gives the reference's tensors.
"""

import tf_keras
import tensorflow as tf

from ssd import anchors
from ssd.architecture import EXTRAS, extra_convs, head_convs
from ssd.model.layers import channels, conv
from ssd.model.resnet import build_backbone

GLOROT = "glorot_uniform"  # the reference's xavier_uniform_ on extra and head weights


def _box_view(x, k, nd, data_format, name):
    """Head output [N, H, W, k * nd] (or [N, k * nd, H, W]) -> [N, nd * H * W, k] in reference order."""
    if data_format == "channels_first":
        _, _, h, w = x.shape
        x = tf_keras.layers.Reshape((k, nd, h, w), name=f"{name}.split")(x)
        x = tf_keras.layers.Permute((2, 3, 4, 1), name=f"{name}.permute")(x)
    else:
        _, h, w, _ = x.shape
        x = tf_keras.layers.Reshape((h, w, k, nd), name=f"{name}.split")(x)
        x = tf_keras.layers.Permute((4, 1, 2, 3), name=f"{name}.permute")(x)
    return tf_keras.layers.Reshape((nd * h * w, k), name=f"{name}.flat")(x)


def build_model(model_cfg) -> tf_keras.Model:
    """SSD-R34 for `model_cfg` (ssd.config.ModelConfig).

    model(images [N, S, S, 3] float32 normalised, training) -> [loc [N, n, 4], logits [N, n, C]],
    float32 also under a mixed-precision policy. With data_format channels_first the layers run in
    NCHW (the input stays NHWC and is transposed once). `model.backbone` is the trunk sub-model.
    """
    fmt = model_cfg.data_format
    s, w = model_cfg.image_size, model_cfg.width_multiplier
    strides = model_cfg.strides
    nds = anchors.boxes_per_location(model_cfg)
    anchors.feature_map_sizes(s, strides)  # a clear error for an input too small for the strides

    images = tf_keras.Input((s, s, 3), name="images")
    x = tf_keras.layers.Permute((3, 1, 2), name="to_nchw")(images) if fmt == "channels_first" else images
    backbone = build_backbone(s, w, fmt)
    x = backbone(x)
    sources = [x]
    for i, ((mid, out, _), c) in enumerate(zip(EXTRAS, extra_convs(strides))):
        x = conv(x, channels(mid, w), 1, 1, 0, f"additional_blocks.{i}.0", fmt, True, GLOROT)
        x = tf_keras.layers.ReLU(name=f"additional_blocks.{i}.1")(x)
        x = conv(x, channels(out, w), c.kernel, c.stride, c.pad, f"additional_blocks.{i}.2", fmt, True, GLOROT)
        x = tf_keras.layers.ReLU(name=f"additional_blocks.{i}.3")(x)
        sources.append(x)

    box_head, class_head = head_convs(strides)
    locs, confs = [], []
    for i, (src, nd) in enumerate(zip(sources, nds)):
        loc = conv(src, 4 * nd, *box_head, f"loc.{i}", fmt, True, GLOROT)
        conf = conv(src, model_cfg.num_classes * nd, *class_head, f"conf.{i}", fmt, True, GLOROT)
        locs.append(_box_view(loc, 4, nd, fmt, f"loc.{i}"))
        confs.append(_box_view(conf, model_cfg.num_classes, nd, fmt, f"conf.{i}"))
    loc = tf_keras.layers.Concatenate(axis=1, name="loc.concat")(locs)
    logits = tf_keras.layers.Concatenate(axis=1, name="conf.concat")(confs)
    # Cast back to float32 under a mixed-precision policy (the loss and post-processing want it).
    loc = tf_keras.layers.Activation("linear", dtype="float32", name="loc")(loc)
    logits = tf_keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
    model = tf_keras.Model(images, [loc, logits], name="ssd_r34")
    model.backbone = backbone
    return model


def reference_layout(loc, logits):
    """[N, n, 4], [N, n, C] -> the reference's (py_location_pred [N, 4, n], py_cls_pred [N, C, n])."""
    return tf.transpose(loc, [0, 2, 1]), tf.transpose(logits, [0, 2, 1])
