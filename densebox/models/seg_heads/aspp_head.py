"""DeepLabv3 ASPP head, and its Mobile DeepLabv3 form (Sandler et al., CVPR'18).

Parallel branches on one feature map, concatenated and projected by a 1x1 ConvBNReLU:

- a 1x1 ConvBNReLU,
- one 3x3 atrous ConvBNReLU per entry of ``dilations`` (full DeepLabv3: (6, 12, 18) at
  output stride 16; Mobile DeepLabv3 drops them: ``dilations=()``),
- image pooling: global average pool -> 1x1 ConvBNReLU -> broadcast back to (h, w).

With MobileNetV2's 320-channel feature, 256 channels and 21 classes this gives the
paper's 2.11M parameters (mobile) / 4.52M (with the three atrous branches).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct
from .decode_head import BaseDecodeHead


@MODELS.register_module()
class ASPPHead(BaseDecodeHead):
    """ASPP decode head.

    Args:
        in_channels: channels of the selected feature (320 for MobileNetV2).
        channels: width of every branch and of the projection (256).
        num_classes: number of classes.
        dilations: rates of the 3x3 atrous branches; ``()`` for Mobile DeepLabv3.
        image_pool: add the image-pooling branch.
        Other keyword arguments go to :class:`BaseDecodeHead` (``in_index``,
        ``dropout_ratio``, ``loss_decode`` ...).

    Forward: tuple of features -> (B, num_classes, h, w) at the selected feature's size.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int,
                 dilations: Sequence[int] = (), image_pool: bool = True,
                 init_cfg: Optional[dict] = None, **kwargs):
        super().__init__(in_channels=in_channels, channels=channels, num_classes=num_classes,
                         init_cfg=init_cfg, **kwargs)
        if any(int(d) < 1 for d in dilations):
            raise ValueError(f'ASPPHead: dilations must be >= 1, got {tuple(dilations)}')
        conv = dict(norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.dilations = tuple(int(d) for d in dilations)
        self.branch_1x1 = ConvBNAct(in_channels, channels, 1, **conv)
        self.atrous = nn.ModuleList(
            ConvBNAct(in_channels, channels, 3, dilation=d, **conv) for d in self.dilations)
        self.image_pool = (nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                         ConvBNAct(in_channels, channels, 1, **conv))
                           if image_pool else None)
        num_branches = 1 + len(self.dilations) + int(image_pool)
        self.project = ConvBNAct(num_branches * channels, channels, 1, **conv)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, channels, h, w)."""
        outs = [self.branch_1x1(x)] + [branch(x) for branch in self.atrous]
        if self.image_pool is not None:
            outs.append(self.image_pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))
