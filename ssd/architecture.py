"""The SSD-R34 layer table: kernels, strides, pads and channels of the reference (mlcommons `ssd_r34.py`,
`base_model_r34.py`), stated once. ssd.model builds its layers from it and ssd.anchors derives the
feature-map sizes from it, so the two cannot disagree. Pure Python: no TensorFlow import."""

from typing import NamedTuple


class Conv(NamedTuple):
    """A PyTorch conv or pool window on a square map: kernel, stride, symmetric zero padding (pixels)."""

    kernel: int
    stride: int
    pad: int

    def out(self, size: int) -> int:
        """The output size for an input of `size` x `size`."""
        return (size + 2 * self.pad - self.kernel) // self.stride + 1


# The trunk, torchvision's ResNet34 up to conv4_x: conv1 (64 channels), the max-pool, then
# (name, blocks, channels, stride of the first block) of layer1..layer3; SSD-R34 runs layer3's first
# block at stride 1. A basic block's convs are 3x3 with pad 1, its 1x1 downsample has pad 0.
CONV1 = Conv(7, 2, 3)
CONV1_CHANNELS = 64
MAXPOOL = Conv(3, 2, 1)
STAGES = (("layer1", 3, 64, 1), ("layer2", 4, 128, 2), ("layer3", 6, 256, 1))
BLOCK_KERNEL, BLOCK_PAD = 3, 1

# The extra layers conv7..conv11 (`additional_blocks.i`): a 1x1 conv to `mid` channels, then a 3x3
# conv to `out` channels with pad `pad`: (mid, out, pad).
EXTRAS = ((256, 512, 1), (256, 512, 1), (128, 256, 1), (128, 256, 0), (128, 256, 0))
EXTRA_KERNEL = 3

# The heads `loc.i` / `conf.i` on the six sources [conv4_x, conv7..conv11]: 3x3 convs with pad 1.
HEAD_KERNEL, HEAD_PAD = 3, 1


def trunk_convs() -> list[Conv]:
    """The windows that set the trunk's output size: conv1, the max-pool, each stage's first 3x3 conv."""
    return [CONV1, MAXPOOL, *(Conv(BLOCK_KERNEL, stride, BLOCK_PAD) for _, _, _, stride in STAGES)]


def extra_convs(strides) -> list[Conv]:
    """The 3x3 convs of conv7..conv11; strides = the reference's [box head, class head, conv7..conv10]
    (conv11 has stride 1)."""
    return [Conv(EXTRA_KERNEL, stride, pad) for stride, (_, _, pad) in zip((*strides[2:6], 1), EXTRAS)]


def head_convs(strides) -> tuple[Conv, Conv]:
    """The box head's and the class head's 3x3 convs (strides[0], strides[1])."""
    return Conv(HEAD_KERNEL, strides[0], HEAD_PAD), Conv(HEAD_KERNEL, strides[1], HEAD_PAD)
