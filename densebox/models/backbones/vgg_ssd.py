"""VGG16 as modified for SSD (Liu et al., 2016).

Changes from the classification VGG16: pool3 rounds up (``ceil_mode``) so a 300 input gives
a 38x38 conv4_3 map; pool5 is 3x3 stride 1; fc6 becomes a 3x3 conv with dilation 6 and
fc7 a 1x1 conv, both with 1024 channels; no dropout and no fc8.
"""
from typing import Optional, Sequence, Tuple

from mmengine.model import BaseModule
from torch import Tensor, nn

from densebox.registry import MODELS

# Channels of each 3x3 conv; 'M' is a 2x2 max-pool, 'C' the same with ceil_mode.
VGG16_LAYOUT = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'C', 512, 512, 512, 'M', 512, 512, 512)

# Sizes of the SSD trunk: the layout of conv1_1 ... conv5_3 and the width of fc6 / fc7.
# 'vgg16' is the paper's network; 'vgg16-quarter' has a quarter of its channels in every
# layer (1/16 of the compute) for quick CPU experiments such as the quickstart.
ARCHS = {
    'vgg16': dict(layout=VGG16_LAYOUT, fc_channels=1024),
    'vgg16-quarter': dict(layout=tuple(c // 4 if isinstance(c, int) else c for c in VGG16_LAYOUT),
                          fc_channels=256),
}


def _vgg_layers(layout: Sequence, with_bn: bool, in_channels: int = 3) -> Tuple[list, int, int]:
    """Build conv1_1 ... conv5_3 (+BN) +ReLU and the pools between them.

    Returns the layers, the output channels and the index of conv4_3's ReLU (the last
    layer before the fourth pool).
    """
    layers, conv4_3 = [], None
    for item in layout:
        if item in ('M', 'C'):
            if sum(isinstance(l, nn.MaxPool2d) for l in layers) == 3:
                conv4_3 = len(layers) - 1
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=item == 'C'))
        else:
            layers.append(nn.Conv2d(in_channels, item, kernel_size=3, padding=1))
            if with_bn:
                layers.append(nn.BatchNorm2d(item))
            layers.append(nn.ReLU(inplace=True))
            in_channels = item
    return layers, in_channels, conv4_3


@MODELS.register_module()
class SSDVGG(BaseModule):
    """VGG16 trunk of SSD.

    ``features`` holds conv1_1 ... conv7 in one ``nn.Sequential`` (indices as in mmdetection
    and torchvision: conv4_3's ReLU is index 22, fc7's ReLU index 34).

    Args:
        arch: a key of ``ARCHS``.
        with_bn: BatchNorm after every trunk conv (VGG16-BN), which trains from scratch.
        out_feature_indices: indices in ``features`` whose outputs are returned; by default
            conv4_3 and fc7 (22 and 34 without BN).
    Shapes:
        input (B, 3, H, W) -> conv4_3 (B, 512, H/8, W/8) and fc7 (B, 1024, H/16, W/16)
        (rounded up: 300 gives 38 and 19; 'vgg16-quarter' has 128 and 256 channels).
    """

    def __init__(self, arch: str = 'vgg16', with_bn: bool = False,
                 out_feature_indices: Optional[Sequence[int]] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if arch not in ARCHS:
            raise ValueError(f'SSDVGG: unknown arch {arch!r}, choose one of {sorted(ARCHS)}')
        trunk, channels, conv4_3 = _vgg_layers(ARCHS[arch]['layout'], with_bn)
        fc = ARCHS[arch]['fc_channels']
        head = [
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),                      # pool5
            nn.Conv2d(channels, fc, kernel_size=3, padding=6, dilation=6),         # fc6
            nn.ReLU(inplace=True),
            nn.Conv2d(fc, fc, kernel_size=1),                                      # fc7
            nn.ReLU(inplace=True),
        ]
        self.features = nn.Sequential(*trunk, *head)
        if out_feature_indices is None:
            out_feature_indices = (conv4_3, len(self.features) - 1)
        self.out_feature_indices = tuple(out_feature_indices)
        if max(self.out_feature_indices) >= len(self.features):
            raise ValueError(f'out_feature_indices {self.out_feature_indices} exceed the '
                             f'{len(self.features)} VGG layers')

    def init_weights(self):
        """Xavier for every conv, then ``init_cfg`` (e.g. ImageNet weights) on top: layers
        a starting point lacks (torchvision's has no fc6 / fc7) keep the Xavier init."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.init_cfg is not None:
            super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        outs = []
        last = max(self.out_feature_indices)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.out_feature_indices:
                outs.append(x)
            if i == last:
                break
        return tuple(outs)
