"""Semantic FPN head (Kirillov et al., "Panoptic Feature Pyramid Networks", CVPR'19).

Each FPN level i (stride s_i, the finest s_0, usually 4) goes through
``max(1, log2(s_i / s_0))`` units of [3x3 conv-norm-ReLU -> 2x bilinear upsample] (the
finest level: one conv, no upsample), so every level arrives at the finest resolution
with ``channels`` channels; the levels are summed, then dropout and the 1x1 classifier.
With FPN outputs of 256 channels and ``channels=128`` this is MMSegmentation's
``FPNHead`` (its submodule names, ``scale_heads.i.<j>.conv``, are kept).
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct, resize
from .decode_head import BaseDecodeHead


class Upsample2x(nn.Module):
    """Bilinear 2x upsampling: (B, C, h, w) -> (B, C, 2h, 2w)."""

    def __init__(self, align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, (2 * x.shape[-2], 2 * x.shape[-1]), 'bilinear', self.align_corners)


@MODELS.register_module()
class FPNHead(BaseDecodeHead):
    """Semantic FPN decode head.

    Args:
        in_channels: channels of the selected levels (256 each after an FPN neck).
        feature_strides: stride of each selected level, finest first, powers of 2
            (``(4, 8, 16, 32)``).
        channels: width of every scale-head unit and of the classifier input (128).
        num_classes: number of classes.
        in_index: indices of the levels in the input tuple (default the first
            ``len(feature_strides)``).
        Other keyword arguments go to :class:`BaseDecodeHead` (``dropout_ratio`` 0.1 by
        default, ``norm_cfg``, ``align_corners`` of the upsampling, ``loss_decode`` ...).

    Forward: tuple of features -> (B, num_classes, H / s_0, W / s_0) logits.
    """

    def __init__(self, in_channels: Sequence[int], feature_strides: Sequence[int],
                 channels: int, num_classes: int, in_index: Optional[Sequence[int]] = None,
                 init_cfg: Optional[dict] = None, **kwargs):
        strides = [int(s) for s in feature_strides]
        if len(strides) != len(in_channels):
            raise ValueError(f'FPNHead: feature_strides {tuple(strides)} and in_channels '
                             f'{tuple(in_channels)} must have the same length')
        if any(s < 1 or s & (s - 1) for s in strides) or strides != sorted(strides):
            raise ValueError(f'FPNHead: feature_strides must be increasing powers of 2, '
                             f'finest first, got {tuple(strides)}')
        if in_index is None:
            in_index = list(range(len(strides)))
        super().__init__(in_channels=list(in_channels), channels=channels,
                         num_classes=num_classes, in_index=list(in_index),
                         init_cfg=init_cfg, **kwargs)
        self.feature_strides = strides
        conv = dict(norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.scale_heads = nn.ModuleList()
        for c_in, stride in zip(in_channels, strides):
            num_units = max(1, int(math.log2(stride // strides[0])))
            layers = []
            for k in range(num_units):
                layers.append(ConvBNAct(c_in if k == 0 else channels, channels, 3, **conv))
                if stride != strides[0]:
                    layers.append(Upsample2x(self.align_corners))
            self.scale_heads.append(nn.Sequential(*layers))

    def forward_features(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Selected levels, finest first -> (B, channels, h_0, w_0) summed features."""
        out = self.scale_heads[0](inputs[0])
        for head, x in zip(self.scale_heads[1:], inputs[1:]):
            # A level whose size is not exactly 2^k times smaller (odd input sizes) is
            # brought to the finest size after its 2x steps.
            out = out + resize(head(x), out.shape[-2:], 'bilinear', self.align_corners)
        return out
