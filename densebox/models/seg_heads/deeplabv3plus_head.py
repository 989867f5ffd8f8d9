"""DeepLabv3+ decoder (Chen et al., ECCV'18): ASPP on the stride-8/16 feature, fused with a
projected low-level (stride-4) feature.

    high -> ASPP (1x1, atrous 3x3 per dilation, image pool) -> 1x1 project -> dropout
    low  -> 1x1 ConvBNReLU to ``c1_channels`` (48)
    upsample(high) to low's size, concat -> 3x3 ConvBNReLU (``channels``) -> classifier

``separable=True`` makes every 3x3 conv of the head depthwise-separable (a depthwise 3x3
followed by a pointwise 1x1, then BN and ReLU), the form ReCo+ trains (its code converts the
head of the VainF DeepLabv3+ this way); the backbone is untouched.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct, resize
from .aspp_head import ASPPHead

__all__ = ['DeepLabV3PlusHead', 'SeparableConvBNAct']


class SeparableConvBNAct(nn.Module):
    """Depthwise k x k (dilated) conv -> pointwise 1x1 conv -> norm -> activation.

    (B, C_in, H, W) -> (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 dilation: int = 1, norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size,
                                   padding=dilation * (kernel_size // 2), dilation=dilation,
                                   groups=in_channels, bias=False)
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, norm_cfg=norm_cfg,
                                   act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


@MODELS.register_module()
class DeepLabV3PlusHead(ASPPHead):
    """DeepLabv3+ head.

    Args:
        in_channels: channels of the high-level feature (2048 for ResNet C5).
        channels: ASPP and decoder width (256).
        c1_in_channels: channels of the low-level feature (256 for ResNet C2).
        c1_channels: its projection width (48).
        dilations: ASPP atrous rates ((12, 24, 36) at output stride 8, (6, 12, 18) at 16).
        separable: depthwise-separable 3x3 convs in the head.
        aspp_dropout: dropout after the ASPP projection (0.1).
        in_index: (low-level index, high-level index) in the backbone's outputs.
        Other arguments: as :class:`ASPPHead` / ``BaseDecodeHead`` (``dropout_ratio`` is the
        dropout before the classifier; DeepLabv3+ has none there).

    Forward: features -> (B, num_classes, h_low, w_low).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, c1_in_channels: int,
                 c1_channels: int = 48, dilations: Sequence[int] = (12, 24, 36),
                 separable: bool = True, aspp_dropout: float = 0.1,
                 in_index: Sequence[int] = (0, 3), dropout_ratio: float = 0.0, **kwargs):
        if len(in_index) != 2:
            raise ValueError(f'DeepLabV3PlusHead: in_index must be (low, high), got {in_index}')
        self.low_index, self.high_index = int(in_index[0]), int(in_index[1])
        super().__init__(in_channels=in_channels, channels=channels, num_classes=num_classes,
                         dilations=dilations, image_pool=True, in_index=self.high_index,
                         dropout_ratio=dropout_ratio, **kwargs)
        conv = dict(norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        if separable:
            self.atrous = nn.ModuleList(
                SeparableConvBNAct(in_channels, channels, 3, dilation=d, **conv)
                for d in self.dilations)
        self.aspp_dropout = nn.Dropout(aspp_dropout) if aspp_dropout > 0 else nn.Identity()
        self.c1_project = ConvBNAct(c1_in_channels, c1_channels, 1, **conv)
        fuse = SeparableConvBNAct if separable else ConvBNAct
        self.fuse = fuse(channels + c1_channels, channels, 3, **conv)

    def _select(self, feats):
        return feats[self.low_index], feats[self.high_index]

    def forward_features(self, inputs) -> torch.Tensor:
        """(low (B, C1, h, w), high (B, C, h', w')) -> (B, channels, h, w)."""
        low, high = inputs
        x = self.aspp_dropout(super().forward_features(high))
        x = resize(x, low.shape[-2:], 'bilinear', self.align_corners)
        return self.fuse(torch.cat([self.c1_project(low), x], dim=1))
