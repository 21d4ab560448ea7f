"""Conv and batch-norm layers that compute what PyTorch's do, in NHWC or NCHW.

PyTorch pads symmetrically (`padding=p` on every side). TensorFlow's `same` padding equals that
only for stride 1 and p = (k - 1) / 2; for other strides it puts the odd pixel at the end or pads
less, and the windows shift. So a conv with padding is an explicit zero pad then a `valid` conv,
except in the stride-1 case where `same` is the same computation. Layer names are the PyTorch
module names, so weight import maps keys to layers by name.
"""

import tf_keras


def channels(n: int, width_multiplier: float) -> int:
    """A conv's channel count under the width multiplier (1.0: the reference's n)."""
    return max(1, int(round(n * width_multiplier)))


def conv(x, filters, kernel, stride, pad, name, data_format, use_bias, kernel_initializer):
    """PyTorch nn.Conv2d(kernel, stride, padding=pad) as a Keras conv, named `name` (weight: kernel)."""
    if pad and stride == 1 and 2 * pad == kernel - 1:
        padding = "same"
    else:
        padding = "valid"
        if pad:
            x = tf_keras.layers.ZeroPadding2D(pad, data_format=data_format, name=name + ".pad")(x)
    return tf_keras.layers.Conv2D(filters, kernel, stride, padding, data_format=data_format, use_bias=use_bias,
                                  kernel_initializer=kernel_initializer, name=name)(x)


def batch_norm(x, name, data_format):
    """PyTorch nn.BatchNorm2d defaults: eps 1e-5, momentum 0.1 (Keras momentum 0.9), trainable."""
    axis = 1 if data_format == "channels_first" else -1
    return tf_keras.layers.BatchNormalization(axis=axis, momentum=0.9, epsilon=1e-5, name=name)(x)
