"""MobileNetV2 backbone (Sandler et al., CVPR'18), with the taps SSDLite and Mobile
DeepLabv3 need.

Layout (paper Table 2, width 1.0): a 3x3/2 stem conv (32), seven stages of inverted
residual blocks (expansion t, output channels c, blocks n, first stride s):

    stage  t    c   n  s   out stride
      0    1   16   1  1      2
      1    6   24   2  2      4
      2    6   32   3  2      8
      3    6   64   4  2     16
      4    6   96   3  1     16
      5    6  160   3  2     32
      6    6  320   1  1     32
    then a 1x1 conv to 1280 channels (index 7).

``out_indices`` entries:

- ``0`` .. ``6``: the output of stage i; ``6`` is the 320-channel second-to-last feature
  on which Mobile DeepLabv3 puts its head;
- ``7``: the final 1x1 conv (1280 channels). It is built only when 7 is requested, so a
  backbone without it has exactly Mobile DeepLabv3's parameters;
- ``'layer15_expansion'``: the output of the 1x1 expansion conv (with its BN and ReLU6)
  of the first block of stage 5, i.e. 6 x 96 = 576 channels at stride 16, before the
  stride-2 depthwise conv. This is "the expansion of layer 15" where SSDLite attaches
  its first prediction layer (torchvision's ssdlite does the same).

Features are returned in the order ``out_indices`` lists them.

``output_stride`` (32, 16 or 8) removes strides once the target is reached and dilates
the later depthwise convs instead, as DeepLab's TF-slim MobileNet does: the block whose
stride is removed keeps the current rate, and the rate is multiplied by that stride for
every later block.

The architecture equals torchvision's ``mobilenet_v2`` (same parameters when built with
index 7); :func:`convert_torchvision_state_dict` maps its weights onto this module, and a
``dict(type='Pretrained', checkpoint='torchvision://mobilenet_v2')`` init_cfg (or a
local file with torchvision keys) is converted automatically.
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from densebox.registry import MODELS
from densebox.models.utils import ConvBNAct, freeze, init_conv_bn

# (expand ratio t, channels c, blocks n, first stride s) per stage, width 1.0.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
EXPANSION_TAP = 'layer15_expansion'
EXPANSION_STAGE = 5  # the tap is the expansion conv of this stage's first block


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never losing over 10%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class InvertedResidual(nn.Module):
    """1x1 expansion (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection.

    The expansion is absent when ``expand_ratio == 1``; the input is added to the
    output when ``stride == 1`` and the channels match.
    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 dilation: int = 1, norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU6')):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = (ConvBNAct(in_channels, hidden, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
                       if expand_ratio != 1 else None)
        self.depthwise = ConvBNAct(hidden, hidden, 3, stride=stride, dilation=dilation,
                                   groups=hidden, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.project = ConvBNAct(hidden, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        self.hidden_channels = hidden

    def forward(self, x: torch.Tensor, return_expansion: bool = False):
        """Returns the block output, and also the (B, hidden, H, W) expansion output
        when ``return_expansion`` (the input itself when there is no expansion)."""
        e = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(e))
        if self.use_residual:
            out = out + x
        return (out, e) if return_expansion else out


@MODELS.register_module()
class MobileNetV2(BaseModule):
    """MobileNetV2 feature extractor.

    Args:
        widen_factor: width multiplier; channels are rounded to multiples of 8 and the
            last conv keeps at least 1280 channels (as in the paper).
        out_indices: features to return, see the module docstring (ints 0..7 and/or
            ``'layer15_expansion'``).
        output_stride: 32 (plain), 16 or 8 (dilated later stages).
        frozen_stages: -1 trains everything; k >= 0 freezes the stem and stages 0..k-1.
        norm_eval: keep norm layers in eval mode while training.
        norm_cfg, act_cfg: mmcv configs; ``dict(type='SyncBN')`` for multi-GPU training.
        init_cfg: mmengine init config; a ``Pretrained`` checkpoint with torchvision keys
            (``features.*``) is converted on load.

    Attributes:
        out_channels, out_strides: per returned feature.

    Forward: (B, 3, H, W) -> tuple of features in ``out_indices`` order.
    """

    def __init__(self, widen_factor: float = 1.0,
                 out_indices: Sequence[Union[int, str]] = (6,),
                 output_stride: int = 32, frozen_stages: int = -1, norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN'), act_cfg: dict = dict(type='ReLU6'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        out_indices = tuple(out_indices)
        valid = set(range(len(STAGES) + 1)) | {EXPANSION_TAP}
        if not out_indices or any(i not in valid for i in out_indices):
            raise ValueError(f'MobileNetV2: out_indices entries must be ints 0..7 or '
                             f'{EXPANSION_TAP!r}, got {out_indices}')
        if output_stride not in (8, 16, 32):
            raise ValueError(f'MobileNetV2: output_stride must be 8, 16 or 32, '
                             f'got {output_stride}')
        if not -1 <= frozen_stages <= len(STAGES):
            raise ValueError(f'MobileNetV2: frozen_stages must be in [-1, {len(STAGES)}], '
                             f'got {frozen_stages}')
        self.out_indices = out_indices
        self.output_stride = output_stride
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        in_ch = make_divisible(STEM_CHANNELS * widen_factor)
        self.stem = ConvBNAct(3, in_ch, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg)
        current_stride, rate = 2, 1
        channels: Dict[Union[int, str], int] = {}
        strides: Dict[Union[int, str], int] = {}
        self.stages = nn.ModuleList()
        for stage_idx, (t, c, n, s) in enumerate(STAGES):
            out_ch = make_divisible(c * widen_factor)
            blocks = []
            for block_idx in range(n):
                stride = s if block_idx == 0 else 1
                if stage_idx == EXPANSION_STAGE and block_idx == 0:
                    channels[EXPANSION_TAP] = int(round(in_ch * t))
                    strides[EXPANSION_TAP] = current_stride
                if current_stride == output_stride:
                    # Target stride reached: no more striding, dilate instead.
                    layer_stride, layer_rate = 1, rate
                    rate *= stride
                else:
                    layer_stride, layer_rate = stride, 1
                    current_stride *= stride
                blocks.append(InvertedResidual(in_ch, out_ch, layer_stride, t, layer_rate,
                                               norm_cfg, act_cfg))
                in_ch = out_ch
            self.stages.append(nn.Sequential(*blocks))
            channels[stage_idx] = out_ch
            strides[stage_idx] = current_stride

        last = len(STAGES)
        channels[last] = make_divisible(LAST_CHANNELS * max(1.0, widen_factor))
        strides[last] = current_stride
        self.conv_last = (ConvBNAct(in_ch, channels[last], 1, norm_cfg=norm_cfg,
                                    act_cfg=act_cfg) if last in out_indices else None)
        self.out_channels = tuple(channels[i] for i in out_indices)
        self.out_strides = tuple(strides[i] for i in out_indices)
        # Only run the stages that some requested output needs.
        depths = [EXPANSION_STAGE if i == EXPANSION_TAP else min(i, last - 1)
                  for i in out_indices]
        self._num_stages_run = max(depths) + 1

        init_conv_bn(self)
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of features, in ``out_indices`` order."""
        outs = {}
        x = self.stem(x)
        for stage_idx in range(self._num_stages_run):
            stage = self.stages[stage_idx]
            if stage_idx == EXPANSION_STAGE and EXPANSION_TAP in self.out_indices:
                x, outs[EXPANSION_TAP] = stage[0](x, return_expansion=True)
                for block in stage[1:]:
                    x = block(x)
            else:
                x = stage(x)
            outs[stage_idx] = x
        if self.conv_last is not None:
            outs[len(STAGES)] = self.conv_last(x)
        return tuple(outs[i] for i in self.out_indices)

    # ------------------------------------------------------------------ training modes
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        freeze(self.stem)
        for i in range(self.frozen_stages):
            freeze(self.stages[i])

    def train(self, mode: bool = True):
        """Switch modes, keeping frozen stages (and all norms if ``norm_eval``) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ weights
    def load_torchvision_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> None:
        """Load a torchvision ``mobilenet_v2`` state dict (classifier keys are dropped,
        and ``features.18`` too when this backbone has no final 1x1 conv)."""
        converted = convert_torchvision_state_dict(state_dict)
        if self.conv_last is None:
            converted = OrderedDict((k, v) for k, v in converted.items()
                                    if not k.startswith('conv_last.'))
        self.load_state_dict(converted, strict=True)

    def init_weights(self) -> None:
        """Apply ``init_cfg``; Pretrained checkpoints in torchvision format are converted."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from mmengine.runner.checkpoint import CheckpointLoader
            ckpt = CheckpointLoader.load_checkpoint(cfg['checkpoint'], map_location='cpu')
            state = ckpt.get('state_dict', ckpt)
            prefix = cfg.get('prefix')
            if prefix:
                prefix = prefix if prefix.endswith('.') else prefix + '.'
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if any(k.startswith('features.') for k in state):
                self.load_torchvision_state_dict(state)
            else:
                self._load_own_state_dict(state, cfg['checkpoint'])
            self._is_init = True
            return
        super().init_weights()

    def _load_own_state_dict(self, state: Dict[str, torch.Tensor], source: str) -> None:
        """Load densebox-keyed weights (e.g. the zoo's converted ImageNet checkpoint): every
        key of this backbone must be there; only the 1280 conv may be extra."""
        if self.conv_last is None:
            state = {k: v for k, v in state.items() if not k.startswith('conv_last.')}
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(f'MobileNetV2: {source} does not fit this backbone (missing '
                               f'{result.missing_keys[:4]}, unexpected '
                               f'{result.unexpected_keys[:4]})')


def convert_torchvision_state_dict(state_dict: Dict[str, torch.Tensor]
                                   ) -> 'OrderedDict[str, torch.Tensor]':
    """Rename torchvision ``mobilenet_v2`` keys to :class:`MobileNetV2` keys (width 1.0
    layout; any width works since only names change). ``classifier.*`` is dropped.

    torchvision: ``features.0`` stem, ``features.1`` .. ``features.17`` the 17 inverted
    residual blocks (``conv.0.0`` / ``conv.0.1`` expansion conv / BN, ``conv.1.*``
    depthwise, ``conv.2`` / ``conv.3`` projection conv / BN; without the expansion the
    depthwise is ``conv.0.*`` and the projection ``conv.1`` / ``conv.2``), ``features.18``
    the final 1x1 conv.
    """
    block_pos = []  # torchvision block number -> (stage, block in stage, has expansion)
    for stage_idx, (t, _, n, _) in enumerate(STAGES):
        block_pos += [(stage_idx, b, t != 1) for b in range(n)]
    last_feature = len(block_pos) + 1

    def unit(sub: str, name: str) -> str:  # sub: '0' conv / '1' BN of a ConvBNAct
        return f'{name}.{"conv" if sub == "0" else "bn"}'

    out = OrderedDict()
    for key, value in state_dict.items():
        parts = key.split('.')
        if parts[0] == 'classifier':
            continue
        if parts[0] != 'features':
            raise KeyError(f'convert_torchvision_state_dict: unexpected key {key!r}')
        idx = int(parts[1])
        rest = parts[2:]
        if idx == 0:
            new = f'{unit(rest[0], "stem")}.{".".join(rest[1:])}'
        elif idx == last_feature:
            new = f'{unit(rest[0], "conv_last")}.{".".join(rest[1:])}'
        else:
            stage, block, has_expand = block_pos[idx - 1]
            base = f'stages.{stage}.{block}'
            assert rest[0] == 'conv', key
            layer = int(rest[1])
            names = (['expand', 'depthwise'] if has_expand else ['depthwise'])
            if layer < len(names):  # a ConvBNAct: conv.<layer>.<0|1>.<param>
                new = f'{base}.{unit(rest[2], names[layer])}.{".".join(rest[3:])}'
            else:  # projection conv (first) and its BN (second)
                which = 'conv' if layer == len(names) else 'bn'
                new = f'{base}.project.{which}.{".".join(rest[2:])}'
        out[new] = value
    return out
