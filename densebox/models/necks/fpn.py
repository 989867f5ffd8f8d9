"""Feature Pyramid Network neck (Lin et al., CVPR'17), in the form MMDetection /
MMSegmentation build it.

For the backbone levels ``start_level .. end_level - 1``:

1. a 1x1 lateral conv maps each level to ``out_channels``;
2. top-down: from the coarsest level down, the coarser lateral is upsampled (nearest, to
   the finer level's size) and added to the finer one;
3. a 3x3 output conv per level.

``num_outs`` larger than the number of used levels appends extra, coarser levels:
stride-2 max pooling (kernel 1) of the last output when ``add_extra_convs=False``
(Faster / Mask R-CNN), or stride-2 3x3 convs (RetinaNet) on ``'on_input'`` (the last used
backbone feature), ``'on_lateral'`` or ``'on_output'``.

Semantic FPN uses 4 outputs of 256 channels and no norm or activation; the submodules are
named as in MMSegmentation (``lateral_convs.i.conv``, ``fpn_convs.i.conv``), so its
checkpoints load key for key.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct

_EXTRA_SOURCES = ('on_input', 'on_lateral', 'on_output')


@MODELS.register_module()
class FPN(BaseModule):
    """FPN neck.

    Args:
        in_channels: channels of every backbone feature the neck receives, finest first.
        out_channels: channels of every output level.
        num_outs: number of output levels (>= the used backbone levels; the rest are
            extra levels).
        start_level: first backbone level used.
        end_level: one past the last backbone level used; -1 for all of them (extra levels
            are only allowed then).
        add_extra_convs: ``False`` (max-pool extras), ``True`` (= ``'on_output'``) or one
            of ``'on_input'``, ``'on_lateral'``, ``'on_output'``.
        relu_before_extra_convs: ReLU before every extra conv after the first.
        no_norm_on_lateral: build the lateral convs without ``norm_cfg``.
        norm_cfg, act_cfg: of every conv (None / None in Semantic FPN: plain convs with
            bias).
        upsample_cfg: keyword arguments of the top-down ``F.interpolate``; with
            ``scale_factor`` the coarser map is scaled by it, else resized to the finer
            map's size. Default ``dict(mode='nearest')``.
        init_cfg: default Xavier-uniform convs, zero biases (as MMSegmentation).

    Shapes:
        inputs: tuple of ``len(in_channels)`` maps (B, in_channels[i], H_i, W_i) ->
        tuple of ``num_outs`` maps (B, out_channels, H_j, W_j), finest first.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int,
                 start_level: int = 0, end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False, no_norm_on_lateral: bool = False,
                 norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = None,
                 upsample_cfg: dict = dict(mode='nearest'),
                 init_cfg: Optional[dict] = dict(type='Xavier', layer='Conv2d',
                                                 distribution='uniform')):
        super().__init__(init_cfg=init_cfg)
        in_channels = [int(c) for c in in_channels]
        num_ins = len(in_channels)
        end = num_ins if end_level == -1 else end_level
        if not 0 <= start_level < end <= num_ins:
            raise ValueError(f'FPN: need 0 <= start_level < end_level <= {num_ins} (the '
                             f'number of in_channels), got start_level={start_level}, '
                             f'end_level={end_level}')
        used = end - start_level
        if num_outs < used or (end_level != -1 and num_outs != used):
            raise ValueError(f'FPN: num_outs={num_outs} must be >= the {used} used levels, '
                             f'and equal to them when end_level is set ({end_level})')
        if add_extra_convs is True:
            add_extra_convs = 'on_output'
        if add_extra_convs not in (False,) + _EXTRA_SOURCES:
            raise ValueError(f'FPN: add_extra_convs must be a bool or one of '
                             f'{_EXTRA_SOURCES}, got {add_extra_convs!r}')
        self.in_channels = in_channels
        self.out_channels = int(out_channels)
        self.num_outs = int(num_outs)
        self.start_level = int(start_level)
        self.end_level = end
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_cfg = dict(upsample_cfg)

        conv = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        lateral = dict(conv, norm_cfg=None if no_norm_on_lateral else norm_cfg)
        self.lateral_convs = nn.ModuleList(
            ConvBNAct(in_channels[i], out_channels, 1, **lateral)
            for i in range(start_level, end))
        self.fpn_convs = nn.ModuleList(
            ConvBNAct(out_channels, out_channels, 3, **conv) for _ in range(used))
        # Extra levels: fpn_convs[used:] are stride-2 convs when add_extra_convs is set.
        num_extra = self.num_outs - used
        if add_extra_convs:
            for i in range(num_extra):
                c_in = (in_channels[end - 1] if i == 0 and add_extra_convs == 'on_input'
                        else out_channels)
                self.fpn_convs.append(ConvBNAct(c_in, out_channels, 3, stride=2, **conv))

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """Tuple of backbone features, finest first -> tuple of ``num_outs`` maps."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'FPN: expected {len(self.in_channels)} input features '
                             f'(in_channels={self.in_channels}), got {len(inputs)}')
        laterals = [conv(inputs[self.start_level + i])
                    for i, conv in enumerate(self.lateral_convs)]
        used = len(laterals)
        for i in range(used - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._upsample(laterals[i], laterals[i - 1])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]

        if self.num_outs > used:
            if not self.add_extra_convs:
                for _ in range(self.num_outs - used):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                source = {'on_input': inputs[self.end_level - 1], 'on_lateral': laterals[-1],
                          'on_output': outs[-1]}[self.add_extra_convs]
                outs.append(self.fpn_convs[used](source))
                for i in range(used + 1, self.num_outs):
                    x = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
                    outs.append(self.fpn_convs[i](x))
        return tuple(outs)

    def _upsample(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        if 'scale_factor' in self.upsample_cfg:
            return F.interpolate(coarse, **self.upsample_cfg)
        return F.interpolate(coarse, size=fine.shape[-2:], **self.upsample_cfg)
