"""iFormer, the Inception Transformer (Si et al., NeurIPS'22; repo sail-sg/iFormer,
``models/inception_transformer.py``), as a dense-prediction backbone and as the ImageNet
classifier its checkpoints belong to.

Layout (strides 4 / 8 / 16 / 32):

- stem: 3x3/2 conv (C0/2) -> BN -> GELU -> 3x3/2 conv (C0) -> BN;
- stage i (i > 0) starts with a 3x3/2 conv + BN; every stage adds a learnable positional
  embedding, stored at the pre-training size (224 / stride) and resized (bilinear) to the
  feature size when they differ, then runs its blocks on channels-last (B, H, W, C) maps.

Block (pre-norm, LayerNorm eps 1e-6; layer scale only in stages 3 and 4)::

    x = x + DropPath(gamma1 * InceptionMixer(LN(x)))
    x = x + DropPath(gamma2 * MLP(LN(x)))          # fc1 -> GELU -> fc2, ratio 4

Inception mixer on C channels with ``num_heads`` heads of C / num_heads channels, of which
``attention_heads`` go to attention (the "frequency ramp": more attention heads deeper):

- the first C_h = C - C_l channels are the high-frequency part, split in half:
  (a) 1x1 conv (C_h/2 -> C_h, no bias) -> 3x3 depthwise conv (no bias) -> GELU,
  (b) 3x3/1 max-pool -> 1x1 conv (C_h/2 -> C_h) -> GELU;
- the last C_l = attention_heads * C / num_heads channels are the low-frequency part:
  2x2 average pooling (stages 1-2) -> multi-head self-attention (qkv projection, no output
  projection) -> nearest 2x upsampling;
- concatenated (2 C_h + C_l channels) as y, then ``y + DWConv3x3(y)`` and a 1x1 conv to C.

Any input size works: convolutions pad, and on an odd-sized map the 2x2 average pooling
takes the partial last window (``ceil_mode``, averaging only the pixels it covers) and the
upsampled attention output is cropped back. On even sizes (all sizes the official model
accepts) this is the official computation, operation by operation; the official model
checkpoints convert with :func:`densebox.converters.convert_official_iformer`.

Each returned stage output gets its own LayerNorm (``norm0`` ... ``norm3``); ``norm3`` is the
official final norm, the others are new (initialised to the identity).
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from densebox.registry import MODELS
from .vit_layers import (DropPath, drop_path_rates, load_pretrained_backbone,
                         resize_pos_embed, run_blocks)

# Official sizes: blocks, widths and heads per stage; attention heads per block.
ARCHS: Dict[str, dict] = {
    's': dict(depths=(3, 3, 9, 3), dims=(96, 192, 320, 384), num_heads=(3, 6, 10, 12),
              attention_heads=(1,) * 3 + (3,) * 3 + (7,) * 4 + (9,) * 5 + (11,) * 3),
    'b': dict(depths=(4, 6, 14, 6), dims=(96, 192, 384, 512), num_heads=(3, 6, 12, 16),
              attention_heads=(1,) * 4 + (3,) * 6 + (8,) * 7 + (10,) * 7 + (15,) * 6),
    'l': dict(depths=(4, 6, 18, 8), dims=(96, 192, 448, 640), num_heads=(3, 6, 14, 20),
              attention_heads=(1,) * 4 + (3,) * 6 + (10,) * 9 + (12,) * 9 + (19,) * 8),
}
# Shared by all sizes.
MLP_RATIO = 4
LOW_FREQ_POOL = (2, 2, 1, 1)          # attention pooling per stage
LAYER_SCALE_STAGES = (2, 3)           # stages with layer scale (the official 3rd and 4th)
LAYER_SCALE_INIT = 1e-6
LN_EPS = 1e-6


def resolve_arch(arch: Union[str, dict]) -> dict:
    """``'s'`` | ``'b'`` | ``'l'``, or a dict with the same keys (e.g. a tiny test model)."""
    if isinstance(arch, str):
        if arch.lower() not in ARCHS:
            raise ValueError(f'IFormer: arch must be one of {sorted(ARCHS)} or a dict, '
                             f'got {arch!r}')
        return dict(ARCHS[arch.lower()])
    spec = dict(arch)
    missing = {'depths', 'dims', 'num_heads', 'attention_heads'} - set(spec)
    if missing:
        raise ValueError(f'IFormer: an arch dict needs {sorted(missing)}')
    depths, dims, heads = spec['depths'], spec['dims'], spec['num_heads']
    if not len(depths) == len(dims) == len(heads) == 4:
        raise ValueError(f'IFormer: depths, dims and num_heads need 4 entries each, got '
                         f'{depths}, {dims}, {heads}')
    if len(spec['attention_heads']) != sum(depths):
        raise ValueError(f'IFormer: attention_heads needs one entry per block '
                         f'({sum(depths)}), got {len(spec["attention_heads"])}')
    block = 0
    for stage, (d, dim, h) in enumerate(zip(depths, dims, heads)):
        for a in spec['attention_heads'][block:block + d]:
            high = dim - a * (dim // h)
            if dim % h or not 0 < a < h or high % 2:
                raise ValueError(f'IFormer: stage {stage}: dim {dim}, {h} heads and {a} '
                                 'attention heads must give 0 < attention heads < heads, '
                                 'dim divisible by heads and an even high-frequency width')
        block += d
    return spec


class HighFrequencyMixer(nn.Module):
    """Conv and max-pool branches on the high-frequency channels.

    (B, C_h, H, W) -> (B, 2 C_h, H, W): [1x1 conv -> 3x3 dw conv -> GELU | max-pool -> 1x1
    conv -> GELU] on the two halves of the channels.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.half = half = dim // 2
        self.conv = nn.Conv2d(half, 2 * half, 1, bias=False)
        self.dwconv = nn.Conv2d(2 * half, 2 * half, 3, padding=1, groups=2 * half, bias=False)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.pool_proj = nn.Conv2d(half, 2 * half, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.act(self.dwconv(self.conv(x[:, :self.half].contiguous())))
        pool = self.act(self.pool_proj(self.pool(x[:, self.half:].contiguous())))
        return torch.cat((conv, pool), dim=1)


class LowFrequencyMixer(nn.Module):
    """Self-attention on the low-frequency channels, on a ``pool_size``-times smaller map.

    (B, C_l, H, W) -> (B, C_l, H, W). Heads of ``C_l / num_heads`` channels; the output is the
    heads' values concatenated (no output projection: the mixer's 1x1 conv follows).
    """

    def __init__(self, dim: int, num_heads: int, pool_size: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.pool_size = pool_size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.pool_size > 1:
            x = F.avg_pool2d(x, self.pool_size, self.pool_size, ceil_mode=True,
                             count_include_pad=False)
        h, w = x.shape[-2:]
        tokens = x.permute(0, 2, 3, 1).reshape(B, h * w, C)
        qkv = self.qkv(tokens).reshape(B, h * w, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)          # each (B, heads, N, d)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (self.attn_drop(attn) @ v).transpose(2, 3).reshape(B, C, h, w)
        if self.pool_size > 1:
            out = F.interpolate(out, scale_factor=self.pool_size, mode='nearest')[:, :, :H, :W]
        return out


class InceptionMixer(nn.Module):
    """High-frequency (first C_h channels) and low-frequency (last C_l) mixers, fused.

    (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, dim: int, num_heads: int, attention_heads: int, pool_size: int,
                 qkv_bias: bool = True, attn_drop: float = 0.0):
        super().__init__()
        self.low_dim = attention_heads * (dim // num_heads)
        self.high_dim = dim - self.low_dim
        fused = 2 * self.high_dim + self.low_dim
        self.high = HighFrequencyMixer(self.high_dim)
        self.low = LowFrequencyMixer(self.low_dim, attention_heads, pool_size, qkv_bias,
                                     attn_drop)
        self.fuse = nn.Conv2d(fused, fused, 3, padding=1, groups=fused, bias=False)
        self.proj = nn.Conv2d(fused, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        high = self.high(x[:, :self.high_dim].contiguous())
        low = self.low(x[:, self.high_dim:].contiguous())
        y = torch.cat((high, low), dim=1)
        y = y + self.fuse(y)
        return self.proj(y).permute(0, 2, 3, 1).contiguous()


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 on the last dimension."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class IFormerBlock(nn.Module):
    """Pre-norm inception-mixer block on (B, H, W, C) maps, with optional layer scale."""

    def __init__(self, dim: int, num_heads: int, attention_heads: int, pool_size: int,
                 drop_path: float = 0.0, layer_scale: bool = False, attn_drop: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mixer = InceptionMixer(dim, num_heads, attention_heads, pool_size,
                                    attn_drop=attn_drop)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * MLP_RATIO)
        self.drop_path = DropPath(drop_path)
        if layer_scale:
            self.gamma1 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
            self.gamma2 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        else:
            self.gamma1 = self.gamma2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma1 is not None:
            x = x + self.drop_path(self.gamma1 * self.mixer(self.norm1(x)))
            return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stem(nn.Module):
    """(B, 3, H, W) -> (B, C, H/4, W/4): two 3x3/2 convs with BN, GELU between."""

    def __init__(self, dim: int, norm_cfg: dict):
        super().__init__()
        self.conv1 = nn.Conv2d(3, dim // 2, 3, stride=2, padding=1)
        self.bn1 = build_norm_layer(norm_cfg, dim // 2)[1]
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1)
        self.bn2 = build_norm_layer(norm_cfg, dim)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class Downsample(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H/2, W/2): 3x3/2 conv + BN."""

    def __init__(self, in_dim: int, out_dim: int, norm_cfg: dict):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1)
        self.bn = build_norm_layer(norm_cfg, out_dim)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class IFormerStage(nn.Module):
    """Downsampling (or the stem), a positional embedding, blocks.

    (B, C_in, H, W) -> (B, H', W', C) channels-last.
    """

    def __init__(self, entry: nn.Module, dim: int, pos_size: int, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = entry
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_size, pos_size, dim))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, use_checkpoint: bool = False) -> torch.Tensor:
        x = self.downsample(x).permute(0, 2, 3, 1)
        pos = resize_pos_embed(self.pos_embed.permute(0, 3, 1, 2), x.shape[1:3])
        x = x + pos.permute(0, 2, 3, 1)
        return run_blocks(self.blocks, x, use_checkpoint)


@MODELS.register_module()
class IFormer(BaseModule):
    """iFormer backbone.

    Args:
        arch: ``'s'`` | ``'b'`` | ``'l'`` (see :data:`ARCHS`), or a dict with ``depths``,
            ``dims``, ``num_heads``, ``attention_heads``.
        out_indices: stages to return (0..3, strides 4 / 8 / 16 / 32), each through its own
            LayerNorm, as (B, C_i, H_i, W_i) maps.
        drop_path_rate: stochastic depth of the last block (linear from 0).
        pretrain_img_size: image size of the checkpoint the positional embeddings come from
            (224, or 384 for the ``*_384`` weights): they are stored at size / stride.
        with_cp: gradient checkpointing of every block (less memory, slower backward).
        norm_cfg: norm of the stem and the downsampling convs (BN; ``dict(type='SyncBN')``
            for multi-GPU training).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH | URL | 'zoo://iformer_s_in1k')``
            (see :func:`~densebox.models.backbones.vit_layers.load_pretrained_backbone`);
            official checkpoints (``patch_embed.proj1.weight`` ...) are converted on load.

    Attributes:
        out_channels, out_strides: per returned feature.

    Forward: (B, 3, H, W) -> tuple of (B, C_i, ceil(H / s_i), ceil(W / s_i)), any H, W.
    """

    def __init__(self, arch: Union[str, dict] = 's', out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.0, pretrain_img_size: int = 224,
                 with_cp: bool = False, norm_cfg: dict = dict(type='BN'),
                 attn_drop_rate: float = 0.0, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        spec = resolve_arch(arch)
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f'IFormer: out_indices must be stage numbers 0..3, '
                             f'got {out_indices}')
        if pretrain_img_size % 32:
            raise ValueError(f'IFormer: pretrain_img_size must be a multiple of 32, '
                             f'got {pretrain_img_size}')
        self.arch = arch          # as given: the converter names official sizes in errors
        self.out_indices = out_indices
        self.with_cp = with_cp
        dims, depths = spec['dims'], spec['depths']
        self.out_channels = tuple(dims[i] for i in out_indices)
        self.out_strides = tuple(4 * 2 ** i for i in out_indices)

        rates = drop_path_rates(drop_path_rate, depths)
        attention = iter(spec['attention_heads'])
        self.stages = nn.ModuleList()
        for i, (depth, dim, heads) in enumerate(zip(depths, dims, spec['num_heads'])):
            entry = Stem(dim, norm_cfg) if i == 0 else Downsample(dims[i - 1], dim, norm_cfg)
            blocks = [IFormerBlock(dim, heads, next(attention), LOW_FREQ_POOL[i], rates[i][j],
                                   layer_scale=i in LAYER_SCALE_STAGES,
                                   attn_drop=attn_drop_rate)
                      for j in range(depth)]
            self.stages.append(IFormerStage(entry, dim, pretrain_img_size // 4 // 2 ** i,
                                            blocks))
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i], eps=LN_EPS))
        self._init_from_scratch()

    @property
    def stem(self) -> nn.Module:
        """The stem is stage 0's entry module (``stages.0.downsample``)."""
        return self.stages[0].downsample

    def _init_from_scratch(self) -> None:
        """The official initialisation: truncated-normal (std 0.02) linears, convs and
        positional embeddings, zero biases, unit norms."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for stage in self.stages:
            nn.init.trunc_normal_(stage.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of normalised (B, C_i, H_i, W_i) stage outputs."""
        outs = {}
        for i, stage in enumerate(self.stages[:max(self.out_indices) + 1]):
            x = stage(x, self.with_cp)                                   # (B, H, W, C)
            if i in self.out_indices:
                outs[i] = getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous()
            x = x.permute(0, 3, 1, 2)
        return tuple(outs[i] for i in self.out_indices)

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from densebox.converters.iformer import convert_official_iformer, is_official_iformer
            load_pretrained_backbone(
                self, cfg, is_official_iformer,
                lambda state: convert_official_iformer(state, self.arch,
                                                       pretrain_img_size=self._pos_size()),
                optional_prefixes=tuple(f'norm{i}.' for i in range(4)),
                how_to_get='The official ImageNet weights are the zoo entries iformer_{s,b,l}'
                           '[_384]_in1k (checkpoint=\'zoo://iformer_s_in1k\'), or convert a '
                           'downloaded file with tools/convert/iformer.py.')
            self._is_init = True
            return
        super().init_weights()

    def _pos_size(self) -> int:
        return self.stages[0].pos_embed.shape[1] * 4


@MODELS.register_module()
class IFormerClassifier(BaseModule):
    """The official ImageNet classifier: iFormer, final LayerNorm, global mean, linear.

    (B, 3, H, W) -> (B, num_classes) logits. For parameter / FLOP counts against the paper
    and for checking converted weights; ``backbone`` is an :class:`IFormer` with
    ``out_indices=(3,)``.
    """

    def __init__(self, arch: Union[str, dict] = 's', num_classes: int = 1000,
                 drop_path_rate: float = 0.0, pretrain_img_size: int = 224,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.backbone = IFormer(arch, out_indices=(3,), drop_path_rate=drop_path_rate,
                                pretrain_img_size=pretrain_img_size)
        self.head = nn.Linear(self.backbone.out_channels[0], num_classes)
        nn.init.zeros_(self.head.weight)   # as the official initialisation
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0].mean(dim=(2, 3)))
