"""FCN head (Long et al.): a few 3x3 ConvBNReLUs and a classifier; used as the
auxiliary head of encoder-decoders."""
from typing import Optional

import torch
import torch.nn as nn

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct
from .decode_head import BaseDecodeHead


@MODELS.register_module()
class FCNHead(BaseDecodeHead):
    """FCN head.

    Args:
        in_channels, channels, num_classes: as in :class:`BaseDecodeHead`.
        num_convs: number of ConvBNReLUs (0 passes the input through; it then needs
            ``in_channels == channels``).
        kernel_size: their kernel size; dilation: their dilation.
        concat_input: concatenate the input with the conv output and fuse them with one
            more ConvBNReLU.
        Other keyword arguments go to :class:`BaseDecodeHead` (``in_index``, ...).

    Forward: tuple of features -> (B, num_classes, h, w).
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_convs: int = 2,
                 kernel_size: int = 3, dilation: int = 1, concat_input: bool = True,
                 init_cfg: Optional[dict] = None, **kwargs):
        super().__init__(in_channels=in_channels, channels=channels, num_classes=num_classes,
                         init_cfg=init_cfg, **kwargs)
        if num_convs < 0:
            raise ValueError(f'FCNHead: num_convs must be >= 0, got {num_convs}')
        if num_convs == 0 and in_channels != channels:
            raise ValueError(f'FCNHead: num_convs=0 needs in_channels == channels, got '
                             f'{in_channels} and {channels}')
        conv = dict(kernel_size=kernel_size, dilation=dilation, norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg)
        self.convs = nn.Sequential(*[
            ConvBNAct(in_channels if i == 0 else channels, channels, **conv)
            for i in range(num_convs)])
        self.conv_cat = (ConvBNAct(in_channels + channels, channels, **conv)
                         if concat_input else None)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, channels, h, w)."""
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return out
