"""The ResNet34 trunk of SSD-R34: torchvision's ResNet34 up to conv4_x (`layer3`), conv5_x removed.

As the reference (`base_model_r34.ResNet34`), with the windows and channels of ssd.architecture:
conv1 + bn1 + ReLU + max-pool, layer1..layer3 of basic blocks, layer3's first block at stride 1. The
output is 1/8 of the input: [N, 150, 150, 256] at 1200. Layer names are torchvision's
(`layer2.0.downsample.0`).
BatchNorm is trainable (the reference trains it) with torchvision's eps and momentum.
"""

import tf_keras

from ssd.architecture import BLOCK_KERNEL, BLOCK_PAD, CONV1, CONV1_CHANNELS, MAXPOOL, STAGES
from ssd.model.layers import batch_norm, channels, conv


def _kaiming():
    """torchvision's init for ResNet convs: kaiming normal, fan_out, ReLU gain (a new one per layer,
    as a shared unseeded Keras initializer gives every layer the same values)."""
    return tf_keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _basic_block(x, in_ch, out_ch, stride, name, data_format):
    """torchvision BasicBlock: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x)."""
    y = conv(x, out_ch, BLOCK_KERNEL, stride, BLOCK_PAD, f"{name}.conv1", data_format, False, _kaiming())
    y = tf_keras.layers.ReLU(name=f"{name}.relu1")(batch_norm(y, f"{name}.bn1", data_format))
    y = conv(y, out_ch, BLOCK_KERNEL, 1, BLOCK_PAD, f"{name}.conv2", data_format, False, _kaiming())
    y = batch_norm(y, f"{name}.bn2", data_format)
    if stride != 1 or in_ch != out_ch:
        x = conv(x, out_ch, 1, stride, 0, f"{name}.downsample.0", data_format, False, _kaiming())
        x = batch_norm(x, f"{name}.downsample.1", data_format)
    y = tf_keras.layers.Add(name=f"{name}.add")([y, x])
    return tf_keras.layers.ReLU(name=f"{name}.relu2")(y)


def build_backbone(image_size: int, width_multiplier: float = 1.0, data_format: str = "channels_last"):
    """The trunk as a Keras model named "backbone": images [N, S, S, 3] (or [N, 3, S, S] for
    channels_first), normalised -> conv4_x features [N, S/8, S/8, 256 w] (or NCHW)."""
    shape = (3, image_size, image_size) if data_format == "channels_first" else (image_size, image_size, 3)
    images = tf_keras.Input(shape, name="backbone_images")
    ch = channels(CONV1_CHANNELS, width_multiplier)
    x = conv(images, ch, CONV1.kernel, CONV1.stride, CONV1.pad, "conv1", data_format, False, _kaiming())
    x = tf_keras.layers.ReLU(name="relu")(batch_norm(x, "bn1", data_format))
    # PyTorch pads the max-pool with -inf; after the ReLU every value is >= 0 and every window
    # holds a real pixel, so zero padding gives the same result.
    x = tf_keras.layers.ZeroPadding2D(MAXPOOL.pad, data_format=data_format, name="maxpool.pad")(x)
    x = tf_keras.layers.MaxPool2D(MAXPOOL.kernel, MAXPOOL.stride, "valid", data_format=data_format, name="maxpool")(x)
    in_ch = ch
    for stage, blocks, out, stride in STAGES:
        out_ch = channels(out, width_multiplier)
        for b in range(blocks):
            x = _basic_block(x, in_ch, out_ch, stride if b == 0 else 1, f"{stage}.{b}", data_format)
            in_ch = out_ch
    return tf_keras.Model(images, x, name="backbone")
