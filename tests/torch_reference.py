"""A PyTorch SSD-R34 with the reference's module structure and key names, for comparison tests.

Written after torchvision's ResNet34 (BasicBlock; keys conv1, bn1, layer1..layer4, fc) and
mlcommons/inference `ssd_r34.py` / `base_model_r34.py` (model.layer1 = conv1..layer2, model.layer2 =
layer3 with its first block at stride 1, additional_blocks, loc, conf). A width multiplier narrows
every conv as ssd.model does, so small variants run fast. Test-only: needs torch.
"""

import torch
from torch import nn

from ssd.model.layers import channels


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet34(nn.Module):
    """torchvision.models.resnet34's structure and state-dict keys (1000 classes)."""

    def __init__(self, width=1.0):
        super().__init__()
        c = [channels(n, width) for n in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, c[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = c[0]
        for i, (blocks, cout) in enumerate(zip((3, 4, 6, 3), c), start=1):
            layer = [BasicBlock(cin if b == 0 else cout, cout, 1 if (i == 1 or b > 0) else 2) for b in range(blocks)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c[3], 1000)


class Trunk(nn.Module):
    """base_model_r34.ResNet34: layer1 = conv1..layer2, layer2 = layer3 with its first block at stride 1."""

    def __init__(self, width=1.0):
        super().__init__()
        rn34 = ResNet34(width)
        self.layer1 = nn.Sequential(*list(rn34.children())[:6])
        self.layer2 = nn.Sequential(*list(rn34.children())[6:7])
        block = self.layer2[0][0]
        block.conv1.stride = (1, 1)
        block.downsample[0].stride = (1, 1)

    def forward(self, x):
        return self.layer2(self.layer1(x))


class SSDR34(nn.Module):
    """ssd_r34.SSD_R34 without the decoder: forward -> (conv4_x features, locs [N,4,n], confs [N,C,n])."""

    def __init__(self, label_num=81, strides=(3, 3, 2, 2, 2, 2), width=1.0):
        super().__init__()
        self.label_num = label_num
        self.model = Trunk(width)
        out = [channels(n, width) for n in (256, 512, 512, 256, 256, 256)]
        mid = [channels(n, width) for n in (256, 256, 128, 128, 128)]
        pads = (1, 1, 1, 0, 0)
        blocks = []
        for i in range(5):
            stride = strides[2 + i] if i < 4 else 1
            blocks.append(nn.Sequential(nn.Conv2d(out[i], mid[i], 1), nn.ReLU(inplace=True),
                                        nn.Conv2d(mid[i], out[i + 1], 3, stride, pads[i]), nn.ReLU(inplace=True)))
        self.additional_blocks = nn.ModuleList(blocks)
        nds = (4, 6, 6, 6, 4, 4)
        self.loc = nn.ModuleList(nn.Conv2d(oc, nd * 4, 3, strides[0], 1) for nd, oc in zip(nds, out))
        self.conf = nn.ModuleList(nn.Conv2d(oc, nd * label_num, 3, strides[1], 1) for nd, oc in zip(nds, out))

    def forward(self, x):
        features = self.model(x)
        src = [features]
        y = features
        for block in self.additional_blocks:
            y = block(y)
            src.append(y)
        locs = torch.cat([conv(s).view(s.size(0), 4, -1) for s, conv in zip(src, self.loc)], 2)
        confs = torch.cat([c(s).view(s.size(0), self.label_num, -1) for s, c in zip(src, self.conf)], 2)
        return features, locs, confs


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and batch-norm statistics (so every imported tensor matters), eval mode.

    Scaled so activations stay O(1) through the 13 residual blocks: float32 rounding then stays far
    below the comparison tolerance (1e-4 absolute).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("weight") and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.25)
            elif t.dim() == 4:
                fan_in = t.shape[1] * t.shape[2] * t.shape[3]
                t.copy_(torch.randn(t.shape, generator=g) * (1.0 / fan_in) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return module.eval()
