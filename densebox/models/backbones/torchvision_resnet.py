"""torchvision's ResNet-50 / 101 / 152 (v1.5 bottlenecks) as a segmentation backbone.

The layers are torchvision's own modules under their own names (``conv1``, ``bn1``,
``layer1`` ... ``layer4``; ``avgpool`` / ``fc`` dropped), so torchvision's ImageNet weights
load as they are: ``init_cfg=dict(type='Pretrained', checkpoint='zoo://resnet101_imagenet_torchvision')``
or a local file of the same keys (the classifier's ``fc.*`` is ignored).

Output stride 8 or 16 by dilating the last stages instead of striding
(``replace_stride_with_dilation``, as DeepLab does): ``(False, True, True)`` -> stride 8.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from densebox.registry import MODELS

__all__ = ['TorchvisionResNet']

DEPTHS = {50: 'resnet50', 101: 'resnet101', 152: 'resnet152'}


@MODELS.register_module()
class TorchvisionResNet(BaseModule):
    """ResNet backbone returning (C2, C3, C4, C5) picked by ``out_indices``.

    Args:
        depth: 50, 101 or 152.
        out_indices: stages to return, 0 = C2 (256 channels, stride 4) ... 3 = C5 (2048).
        replace_stride_with_dilation: for layer2..4, dilate instead of striding.
        bn_momentum: BatchNorm momentum of every BN (ReCo+: 0.01; PyTorch's 0.1 default).
        norm_eval: keep BN layers in eval mode while training.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint='zoo://resnet101_imagenet_torchvision')``.

    Forward: (B, 3, H, W) -> tuple of (B, C_i, H / s_i, W / s_i).
    """

    def __init__(self, depth: int = 101, out_indices: Sequence[int] = (0, 1, 2, 3),
                 replace_stride_with_dilation: Sequence[bool] = (False, False, False),
                 bn_momentum: float = 0.1, norm_eval: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        import torchvision
        if depth not in DEPTHS:
            raise ValueError(f'TorchvisionResNet: depth must be one of {sorted(DEPTHS)}, '
                             f'got {depth}')
        if any(i not in (0, 1, 2, 3) for i in out_indices):
            raise ValueError(f'TorchvisionResNet: out_indices must be in 0..3, got {out_indices}')
        net = getattr(torchvision.models, DEPTHS[depth])(
            weights=None, replace_stride_with_dilation=list(replace_stride_with_dilation))
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (net.layer1, net.layer2,
                                                              net.layer3, net.layer4)
        self.out_indices = tuple(out_indices)
        self.norm_eval = bool(norm_eval)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = float(bn_momentum)

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self
