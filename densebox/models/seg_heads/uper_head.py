"""UperNet head (Xiao et al., "Unified Perceptual Parsing for Scene Understanding",
ECCV'18), in the form MMSegmentation uses with Swin / ConvNeXt-style backbones.

1. PPM on the coarsest level: for each pool scale, adaptive average pooling to
   (scale, scale) -> 1x1 ConvBNReLU -> bilinear resize back; concatenated with the input
   and fused by a 3x3 ConvBNReLU (``bottleneck``). This is the top of the pyramid.
2. FPN: a 1x1 ConvBNReLU lateral on every other level; top-down, each coarser map is
   resized (bilinear) to the finer one and added.
3. A 3x3 ConvBNReLU on every fused level but the top; all levels resized (bilinear) to
   the finest one, concatenated, and fused by a 3x3 ConvBNReLU (``fpn_bottleneck``),
   then dropout and the 1x1 classifier.

Submodule names follow MMSegmentation's ``UPerHead`` (``psp_modules.i.1``,
``bottleneck``, ``lateral_convs.i``, ``fpn_convs.i``, ``fpn_bottleneck``).
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct, resize
from .decode_head import BaseDecodeHead


class PPM(nn.ModuleList):
    """Pyramid pooling module (PSPNet): one pooled, projected, re-upsampled map per scale.

    (B, in_channels, h, w) -> list of ``len(pool_scales)`` maps (B, channels, h, w).
    """

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int,
                 norm_cfg: dict, act_cfg: dict, align_corners: bool):
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(int(scale)),
                          ConvBNAct(in_channels, channels, 1, norm_cfg=norm_cfg,
                                    act_cfg=act_cfg))
            for scale in pool_scales)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [resize(branch(x), x.shape[-2:], 'bilinear', self.align_corners)
                for branch in self]


@MODELS.register_module()
class UPerHead(BaseDecodeHead):
    """UperNet decode head.

    Args:
        in_channels: channels of the selected levels, finest first (e.g. 96/192/384/768).
        channels: width of every lateral, PPM branch and fusion conv (512).
        num_classes: number of classes.
        pool_scales: PPM output sizes ((1, 2, 3, 6)).
        in_index: indices of the levels in the input tuple (default the first
            ``len(in_channels)``).
        Other keyword arguments go to :class:`BaseDecodeHead` (``dropout_ratio``,
        ``norm_cfg``, ``align_corners``, ``loss_decode`` ...).

    Forward: tuple of features -> (B, num_classes, h_0, w_0) at the finest level's size.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int,
                 pool_scales: Sequence[int] = (1, 2, 3, 6),
                 in_index: Optional[Sequence[int]] = None, init_cfg: Optional[dict] = None,
                 **kwargs):
        if len(in_channels) < 1 or not pool_scales or min(pool_scales) < 1:
            raise ValueError(f'UPerHead: needs at least one level and positive pool_scales, '
                             f'got in_channels={tuple(in_channels)}, '
                             f'pool_scales={tuple(pool_scales)}')
        if in_index is None:
            in_index = list(range(len(in_channels)))
        super().__init__(in_channels=list(in_channels), channels=channels,
                         num_classes=num_classes, in_index=list(in_index),
                         init_cfg=init_cfg, **kwargs)
        conv = dict(norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.pool_scales = tuple(int(s) for s in pool_scales)
        self.psp_modules = PPM(self.pool_scales, in_channels[-1], channels,
                               align_corners=self.align_corners, **conv)
        self.bottleneck = ConvBNAct(in_channels[-1] + len(self.pool_scales) * channels,
                                    channels, 3, **conv)
        self.lateral_convs = nn.ModuleList(
            ConvBNAct(c, channels, 1, **conv) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(
            ConvBNAct(channels, channels, 3, **conv) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNAct(len(in_channels) * channels, channels, 3, **conv)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels[-1], h, w) -> (B, channels, h, w): the PPM top level."""
        return self.bottleneck(torch.cat([x] + self.psp_modules(x), dim=1))

    def forward_features(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Selected levels, finest first -> (B, channels, h_0, w_0) fused features."""
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(
                laterals[i], laterals[i - 1].shape[-2:], 'bilinear', self.align_corners)
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [resize(o, size, 'bilinear', self.align_corners) for o in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))
