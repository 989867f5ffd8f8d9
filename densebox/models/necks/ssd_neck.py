"""SSD neck: L2-normalise the first source and append the extra downsampling layers."""
from typing import Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from densebox.registry import MODELS


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable per-channel scale (ParseNet).

    SSD puts it on conv4_3, whose activations are much larger than the deeper maps',
    with the scale initialised to 20.
    """

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # Compute the norm in float32 so that fp16 activations do not overflow.
        norm = x.float().pow(2).sum(1, keepdim=True).sqrt() + self.eps
        return (x.float() / norm * self.weight.float()[None, :, None, None]).type_as(x)


def _conv_block(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int,
                depthwise: bool, norm: bool, act: type) -> nn.Sequential:
    """A conv (+BN) + activation; a depthwise-separable pair when ``depthwise``."""
    layers = []
    if depthwise and kernel > 1:
        layers += [nn.Conv2d(in_ch, in_ch, kernel, stride, padding, groups=in_ch, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(in_ch))
        layers.append(act(inplace=True))
        kernel, stride, padding = 1, 1, 0
    layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=not norm))
    if norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(act(inplace=True))
    return nn.Sequential(*layers)


@MODELS.register_module()
class SSDNeck(BaseModule):
    """Extra feature layers of SSD.

    Each extra level is a 1x1 conv to half the output width followed by a 3x3 conv that
    reduces the resolution (``level_strides`` / ``level_paddings``); SSD512 ends with a 4x4
    kernel (``last_kernel_size=4``).

    Args:
        in_channels: channels of the backbone sources, e.g. (512, 1024).
        out_channels: channels of all outputs: the backbone sources followed by the extras,
            e.g. (512, 1024, 512, 256, 256, 256) for SSD300.
        level_strides / level_paddings: of the 3x3 conv of each extra level.
        l2_norm_scale: initial scale of the L2Norm on the first source; None disables it.
        use_depthwise / use_norm / act: SSDLite's depthwise-separable, BN, ReLU6 variant.
    Shapes:
        inputs: tuple of (B, in_channels[i], H_i, W_i) -> tuple of len(out_channels) maps.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int],
                 level_strides: Sequence[int], level_paddings: Sequence[int],
                 l2_norm_scale: Optional[float] = 20.0, last_kernel_size: int = 3,
                 use_depthwise: bool = False, use_norm: bool = False, act: str = 'ReLU',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        num_extra = len(out_channels) - len(in_channels)
        if not (len(level_strides) == len(level_paddings) == num_extra) or num_extra < 0:
            raise ValueError(f'SSDNeck: {num_extra} extra levels need as many level_strides '
                             f'and level_paddings, got {level_strides} / {level_paddings}')
        if tuple(out_channels[:len(in_channels)]) != tuple(in_channels):
            raise ValueError(f'SSDNeck: out_channels {out_channels} must start with '
                             f'in_channels {in_channels}')
        act_layer = {'ReLU': nn.ReLU, 'ReLU6': nn.ReLU6}[act]
        self.l2_norm = L2Norm(in_channels[0], l2_norm_scale) if l2_norm_scale else None
        self.extra_layers = nn.ModuleList()
        prev = out_channels[len(in_channels) - 1]
        for i, (out_ch, stride, pad) in enumerate(
                zip(out_channels[len(in_channels):], level_strides, level_paddings)):
            kernel = last_kernel_size if i == num_extra - 1 else 3
            self.extra_layers.append(nn.Sequential(
                _conv_block(prev, out_ch // 2, 1, 1, 0, False, use_norm, act_layer),
                _conv_block(out_ch // 2, out_ch, kernel, stride, pad, use_depthwise, use_norm,
                            act_layer)))
            prev = out_ch

    def init_weights(self):
        for m in self.extra_layers.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        outs = list(inputs)
        if self.l2_norm is not None:
            outs[0] = self.l2_norm(outs[0])
        x = outs[-1]
        for layer in self.extra_layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)
