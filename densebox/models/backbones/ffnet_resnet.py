"""FFNet-style ResNet backbones (Mehta et al., "Simple and Efficient Architectures for
Semantic Segmentation", CVPR'22 ECV workshop; repo Qualcomm-AI-research/FFNet).

ResNets made of BasicBlocks only (two 3x3 convs per block), with deep stages instead of
dilated convolutions, in three families:

- ``A``: 7x7/2 conv + 3x3/2 max-pool stem, stage widths 64/128/256/512 (torchvision's
  ResNet-18/34 are ``arch='18'`` / ``'34'``).
- ``S`` (slim): stem 3x3/2 (32) -> 3x3/2 (64), stage widths 64/128/192/320.
- ``N`` / ``NS`` (three stages): stem 3x3/2 (64) -> 3x3/2 (64) -> 3x3/1 (64) gives the 1/4
  feature, then three stages at 1/8, 1/16, 1/32 with widths 96/160/320 (N) or 64/128/256 (NS).

The number in an arch name is its depth; stage layouts follow the FFNet repository's
``models/resnet.py``. A leading ``d`` (``'d78S'``, ``'d18'``; families A and S only) gives
stage 1 a stride of 2, so the four outputs sit at strides 8/16/32/64 instead of 4/8/16/32.

Module names mirror the FFNet repository (``conv1``/``bn1``/``layer1`` ... for A, which are
also torchvision's ResNet names; ``conv0``/``bn0`` ... for the S and N stems), so their
backbone checkpoints load after stripping the ``backbone_model.`` prefix.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from densebox.registry import MODELS
from densebox.models.utils import freeze, init_conv_bn

# Family -> stem channels and residual stage widths.
FAMILIES = {
    'A': dict(stem='7x7', stem_channels=64, widths=(64, 128, 256, 512)),
    'S': dict(stem='slim', stem_channels=64, widths=(64, 128, 192, 320)),
    'N': dict(stem='narrow', stem_channels=64, widths=(96, 160, 320)),
    'NS': dict(stem='narrow', stem_channels=64, widths=(64, 128, 256)),
}

# Arch name -> (family, blocks per stage).
ARCHS = {
    '18': ('A', (2, 2, 2, 2)),
    '34': ('A', (3, 4, 6, 3)),
    '56': ('A', (4, 8, 12, 3)),
    '86': ('A', (8, 12, 16, 6)),
    '134': ('A', (8, 18, 28, 12)),
    '150': ('A', (16, 18, 28, 12)),
    '22S': ('S', (2, 3, 3, 2)),
    '30S': ('S', (3, 4, 4, 3)),
    '40S': ('S', (4, 5, 6, 4)),
    '54S': ('S', (5, 8, 8, 5)),
    '78S': ('S', (6, 12, 12, 8)),
    '86S': ('S', (8, 12, 16, 6)),
    '150S': ('S', (16, 18, 28, 12)),
    '46N': ('N', (6, 8, 8)),
    '74N': ('N', (8, 12, 16)),
    '122N': ('N', (16, 24, 20)),
    '46NS': ('NS', (6, 8, 8)),
    '74NS': ('NS', (8, 12, 16)),
    '122NS': ('NS', (16, 24, 20)),
}


def parse_arch(arch: str) -> Tuple[str, Tuple[int, ...], bool]:
    """``'d78S'`` -> (family 'S', blocks (6, 12, 12, 8), downsample_stage1 True)."""
    name = str(arch)
    down = name.startswith('d')
    if down:
        name = name[1:]
    if name not in ARCHS:
        raise ValueError(f'FFNetResNet: unknown arch {arch!r}; expected one of '
                         f'{sorted(ARCHS)} (optionally with a leading "d")')
    family, blocks = ARCHS[name]
    if down and family not in ('A', 'S'):
        raise ValueError(f'FFNetResNet: arch {arch!r}: the "d" variant exists for the A and S '
                         f'families only')
    return family, blocks, down


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN units with an identity (or 1x1 conv-BN projection) shortcut.

    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, out_channels)[1]
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


@MODELS.register_module()
class FFNetResNet(BaseModule):
    """FFNet ResNet backbone.

    Args:
        arch: one of :data:`ARCHS` (``'78S'``, ``'150'``, ``'122NS'`` ...), optionally
            prefixed with ``'d'`` (stride 2 in stage 1; A and S families).
        out_indices: which of the four features to return, in increasing depth order:
            index 0 is the 1/4 feature (stage 1; the stem output for N/NS), 1..3 the
            following stages at 1/8, 1/16, 1/32 (all twice as coarse for ``'d'`` archs).
        frozen_stages: -1 trains everything; k >= 0 freezes the stem and the first k
            residual stages (``layer1`` .. ``layer{k}``).
        norm_eval: keep every norm layer in eval mode while training (frozen statistics).
        norm_cfg: mmcv norm config; ``dict(type='SyncBN')`` for multi-GPU training.
        init_cfg: mmengine init config (e.g. ``dict(type='Pretrained', checkpoint=...)``);
            without it the weights are Kaiming-initialised at construction.

    Attributes:
        out_channels, out_strides: channels and strides of the returned features.

    Forward: (B, 3, H, W) -> tuple of (B, out_channels[i], H / out_strides[i], W / ...).
    """

    def __init__(self, arch: str = '78S', out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN'), init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        family, blocks, down = parse_arch(arch)
        spec = FAMILIES[family]
        self.arch, self.family = str(arch), family
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages

        out_indices = tuple(out_indices)
        if not out_indices or any(not 0 <= i <= 3 for i in out_indices):
            raise ValueError(f'FFNetResNet: out_indices must be a non-empty subset of '
                             f'(0, 1, 2, 3), got {out_indices}')
        self.out_indices = out_indices
        if not -1 <= frozen_stages <= len(blocks):
            raise ValueError(f'FFNetResNet: frozen_stages must be in [-1, {len(blocks)}] for '
                             f'arch {arch!r}, got {frozen_stages}')

        self._build_stem(spec, norm_cfg)
        in_ch = spec['stem_channels']
        strides = [2] * len(blocks)
        if len(blocks) == 4 and not down:
            strides[0] = 1  # stage 1 keeps the 1/4 resolution of the stem
        self.num_stages = len(blocks)
        for i, (n, width, stride) in enumerate(zip(blocks, spec['widths'], strides)):
            layers = [BasicBlock(in_ch, width, stride, norm_cfg)]
            layers += [BasicBlock(width, width, 1, norm_cfg) for _ in range(n - 1)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*layers))
            in_ch = width

        # Channels / strides of the four candidate outputs.
        if family in ('N', 'NS'):
            all_channels = (spec['stem_channels'],) + tuple(spec['widths'])
            all_strides = (4, 8, 16, 32)
        else:
            all_channels = tuple(spec['widths'])
            all_strides = (8, 16, 32, 64) if down else (4, 8, 16, 32)
        self.out_channels = tuple(all_channels[i] for i in out_indices)
        self.out_strides = tuple(all_strides[i] for i in out_indices)

        init_conv_bn(self)
        self._freeze_stages()

    def _build_stem(self, spec: dict, norm_cfg: dict) -> None:
        if spec['stem'] == '7x7':
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = build_norm_layer(norm_cfg, 64)[1]
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            convs = [('conv1', 'bn1')]
        elif spec['stem'] == 'slim':
            self.conv0 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
            self.bn0 = build_norm_layer(norm_cfg, 32)[1]
            self.conv1 = nn.Conv2d(32, 64, 3, 2, 1, bias=False)
            self.bn1 = build_norm_layer(norm_cfg, 64)[1]
            convs = [('conv0', 'bn0'), ('conv1', 'bn1')]
        else:  # narrow: three convs, the last one at stride 1 produces the 1/4 feature
            c = spec['stem_channels']
            self.conv0 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
            self.bn0 = build_norm_layer(norm_cfg, 64)[1]
            self.conv1 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
            self.bn1 = build_norm_layer(norm_cfg, 64)[1]
            self.conv2 = nn.Conv2d(64, c, 3, 1, 1, bias=False)
            self.bn2 = build_norm_layer(norm_cfg, c)[1]
            convs = [('conv0', 'bn0'), ('conv1', 'bn1'), ('conv2', 'bn2')]
        self._stem_names = convs
        self.relu = nn.ReLU(inplace=True)

    def _stem_modules(self):
        for conv, bn in self._stem_names:
            yield getattr(self, conv)
            yield getattr(self, bn)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 64, H / 4, W / 4)."""
        for conv, bn in self._stem_names:
            x = self.relu(getattr(self, bn)(getattr(self, conv)(x)))
        if self.family == 'A':
            x = self.maxpool(x)
        return x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of the features selected by ``out_indices``."""
        x = self.forward_stem(x)
        feats = [x] if self.num_stages == 3 else []
        for i in range(self.num_stages):
            x = getattr(self, f'layer{i + 1}')(x)
            feats.append(x)
        return tuple(feats[i] for i in self.out_indices)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for m in self._stem_modules():
            freeze(m)
        for i in range(1, self.frozen_stages + 1):
            freeze(getattr(self, f'layer{i}'))

    def train(self, mode: bool = True):
        """Switch modes, keeping frozen stages (and all norms if ``norm_eval``) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
