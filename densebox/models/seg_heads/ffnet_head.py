"""FFNet's up-head and segmentation head (Mehta et al., CVPR'22 ECV workshop).

Four backbone features (strides 4/8/16/32, or 8..64 for "d" backbones) go through

1. a 1x1 ConvBNReLU adapter per branch (widths by up-head type),
2. a top-down path: at each level a 1x1 ConvBNReLU maps the coarser sum to the finer
   level's width, it is upsampled and added to the finer adapter output,
3. a 3x3 ConvBNReLU output per level (widths by up-head type),
4. upsampling of every level output to the finest level and concatenation,
5. a 3x3 conv-BN-ReLU (width by seg-head type) and the classifier.

The model names of the paper, "X-Y-Z", are backbone-stem / up-head / seg-head types:
``'86S dBBB'`` is ``FFNetResNet('d86S')`` + ``FFNetUpHead(up_head='B', seg_head='B')``.
GPU models upsample bilinearly (``align_corners=True`` in the reference repository),
mobile models with nearest neighbour.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct, resize
from .decode_head import BaseDecodeHead

# Up-head type -> adapter widths (finest first) and per-level output widths.
UP_HEADS = {
    'A': dict(adapter=(64, 128, 256, 512), outputs=(128, 128, 128, 128)),
    'B': dict(adapter=(64, 128, 128, 256), outputs=(96, 96, 64, 32)),
    'C': dict(adapter=(128, 128, 128, 128), outputs=(128, 16, 16, 16)),
}
# Seg-head type -> width of the 3x3 conv-BN-ReLU and kernel size of the classifier.
SEG_HEADS = {
    'A': dict(channels=512, cls_kernel_size=1),
    'B': dict(channels=256, cls_kernel_size=3),
    'C': dict(channels=128, cls_kernel_size=1),
}


@MODELS.register_module()
class FFNetUpHead(BaseDecodeHead):
    """FFNet up-head + seg-head.

    Args:
        in_channels: channels of the four selected backbone features, finest first.
        num_classes: number of classes.
        up_head: ``'A'`` | ``'B'`` | ``'C'`` (adapter and per-level widths, see
            :data:`UP_HEADS`).
        seg_head: ``'A'`` | ``'B'`` | ``'C'`` (3x3 conv width 512 / 256 / 128; the B
            classifier is a 3x3 conv, the others 1x1).
        upsample_mode: ``'bilinear'`` (GPU models) or ``'nearest'`` (mobile models).
        upsample_align_corners: ``align_corners`` of the bilinear upsampling inside the
            head (True in the reference implementation).
        in_index: indices of the four features in the backbone output tuple.
        dropout_ratio: dropout before the classifier (FFNet uses none).
        Other keyword arguments go to :class:`BaseDecodeHead`.

    Forward: tuple of features -> (B, num_classes, H / s0, W / s0), s0 the finest stride.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, up_head: str = 'B',
                 seg_head: str = 'B', upsample_mode: str = 'bilinear',
                 upsample_align_corners: bool = True,
                 in_index: Sequence[int] = (0, 1, 2, 3), dropout_ratio: float = 0.0,
                 init_cfg: Optional[dict] = None, **kwargs):
        if up_head not in UP_HEADS:
            raise ValueError(f'FFNetUpHead: up_head must be one of {sorted(UP_HEADS)}, '
                             f'got {up_head!r}')
        if seg_head not in SEG_HEADS:
            raise ValueError(f'FFNetUpHead: seg_head must be one of {sorted(SEG_HEADS)}, '
                             f'got {seg_head!r}')
        if upsample_mode not in ('bilinear', 'nearest'):
            raise ValueError(f'FFNetUpHead: upsample_mode must be "bilinear" or "nearest", '
                             f'got {upsample_mode!r}')
        if len(in_channels) != 4:
            raise ValueError(f'FFNetUpHead: expects 4 input features, got in_channels '
                             f'{tuple(in_channels)}')
        seg = SEG_HEADS[seg_head]
        super().__init__(in_channels=list(in_channels), channels=seg['channels'],
                         num_classes=num_classes, in_index=list(in_index),
                         dropout_ratio=dropout_ratio, cls_kernel_size=seg['cls_kernel_size'],
                         init_cfg=init_cfg, **kwargs)
        self.up_head, self.seg_head = up_head, seg_head
        self.upsample_mode = upsample_mode
        self.upsample_align_corners = upsample_align_corners
        adapter = UP_HEADS[up_head]['adapter']
        outputs = UP_HEADS[up_head]['outputs']
        conv = dict(norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

        self.adapters = nn.ModuleList(
            ConvBNAct(c_in, c_out, 1, **conv) for c_in, c_out in zip(in_channels, adapter))
        # top_down[i] maps level i+1 (coarser) to level i's width before upsampling.
        self.top_down = nn.ModuleList(
            ConvBNAct(adapter[i + 1], adapter[i], 1, **conv) for i in range(3))
        self.level_outputs = nn.ModuleList(
            ConvBNAct(adapter[i], outputs[i], 3, **conv) for i in range(4))
        self.fuse = ConvBNAct(sum(outputs), self.channels, 3, **conv)

    def _up(self, x: torch.Tensor, size) -> torch.Tensor:
        return resize(x, size, self.upsample_mode, self.upsample_align_corners)

    def forward_features(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Four features (finest first) -> (B, channels, h0, w0) fused features."""
        feats = [adapt(x) for adapt, x in zip(self.adapters, inputs)]
        outs = [None] * 4
        x = feats[3]
        for i in (3, 2, 1):
            outs[i] = self.level_outputs[i](x)
            x = self._up(self.top_down[i - 1](x), feats[i - 1].shape[-2:]) + feats[i - 1]
        outs[0] = self.level_outputs[0](x)
        size = outs[0].shape[-2:]
        fused = torch.cat([outs[0]] + [self._up(o, size) for o in outs[1:]], dim=1)
        return self.fuse(fused)
