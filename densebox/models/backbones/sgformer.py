"""SG-Former, the Self-Guided Transformer (Ren et al., ICCV'23; repo OliverRensu/SG-Former,
``sgformer.py``), as a dense-prediction backbone and as its ImageNet classifier.

Layout (strides 4 / 8 / 16 / 32), all maps kept as token sequences (B, N, C) with N = H W:

- stem: 3x3/2 conv -> GN -> GELU -> 3x3 conv -> GN -> GELU -> 3x3/2 conv -> GN (GroupNorm
  with one group, convs without bias), then LayerNorm (eps 1e-5) and a 2D sin-cos positional
  embedding (a parameter, stored at 224 / 4 and resized bilinearly for other sizes);
- stage i > 0 starts with 1x1 conv -> GN -> GELU -> 3x3/2 depthwise conv -> GN -> GELU ->
  1x1 conv -> GN;
- every stage ends with a LayerNorm (eps 1e-6) whose output is both the stage's returned
  feature and the next stage's input.

Block (pre-norm, LayerNorm eps 1e-6): ``x + DropPath(Attn(LN x))``, then
``x + DropPath(MLP(LN x))`` with MLP = fc1 -> (h + DWConv3x3 h) -> GELU -> fc2 (ratio 4).
Every attention adds LePE (a 3x3 depthwise conv on a linear map of its input) to the
attended values before the output projection. In stages 1-3 (key reduction ``sr`` 8, 4, 2)
blocks alternate:

- **hybrid-scale** (even blocks, :class:`HybridScaleAttention`): half the heads attend
  globally to keys pooled by an sr x sr stride-sr conv (+ LayerNorm eps 1e-5 + GELU), the
  other half inside 7x7 windows. Each half's attention, averaged over heads and queries,
  scores every key; the global scores (upsampled, nearest) plus the local ones form the
  **significance map** S (B, H, W), passed to the next block;
- **self-guided** (odd blocks, :class:`SelfGuidedAttention`): queries are all tokens; keys
  and values come from the tokens *reallocated* by S: sorted by significance (ascending),
  cut into groups (sr 8: the lowest quarter, the middle half, the top quarter), and each
  group's consecutive runs of f tokens merged into one by a learned ``Linear(f, 1)`` --
  coarse f for insignificant tokens, fine f for significant ones (:data:`REALLOCATION`).
  Half the heads use the row-major order of S, half the column-major order.

Stage 4 uses global attention (:class:`GlobalAttention`).

Any input size works. The official model runs only where the windows and merge runs divide
the maps (224 x 224); elsewhere densebox pads: the sr conv's input (zeros) to a multiple of
sr, the local attention's maps to a multiple of 7 (padded keys masked out, padded queries
dropped and counted as zero in the significance), and a reallocation group whose size is
not a multiple of its f by repeating its last (most significant) token. Where the official
model runs, no padding happens and the computation is the official one;
:func:`densebox.converters.convert_official_sgformer` converts its checkpoints.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.utils.checkpoint import checkpoint

from densebox.registry import MODELS
from .vit_layers import DropPath, drop_path_rates, load_pretrained_backbone, resize_pos_embed

# Official sizes: widths, heads and blocks per stage.
ARCHS: Dict[str, dict] = {
    's': dict(dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), depths=(2, 4, 16, 1)),
    'm': dict(dims=(64, 128, 256, 512), num_heads=(2, 4, 8, 16), depths=(2, 6, 28, 2)),
    'b': dict(dims=(96, 192, 384, 768), num_heads=(4, 6, 12, 24), depths=(4, 6, 24, 2)),
}
# Shared by all sizes.
SR_RATIOS = (8, 4, 2, 1)
MLP_RATIO = 4
WINDOW = 7
LN_EPS = 1e-6
# Token reallocation per key reduction sr: the significance-sorted tokens are cut into
# ``parts`` equal parts; each group takes ``n`` consecutive parts (least significant first;
# the last group also takes the remainder) and merges runs of ``f`` tokens into one.
# At 224 x 224 this gives 4 + 28 + 28 = 60 keys in stage 1, 4 + 28 + 28 in stage 2 and
# 49 + 98 = 147 in stage 3.
REALLOCATION = {
    8: dict(parts=4, groups=((1, 196), (2, 56), (1, 28))),
    4: dict(parts=4, groups=((1, 49), (2, 14), (1, 7))),
    2: dict(parts=2, groups=((1, 2), (1, 1))),
}


def resolve_arch(arch: Union[str, dict]) -> dict:
    """``'s'`` | ``'m'`` | ``'b'``, or a dict with ``dims``, ``num_heads``, ``depths``."""
    if isinstance(arch, str):
        if arch.lower() not in ARCHS:
            raise ValueError(f'SGFormer: arch must be one of {sorted(ARCHS)} or a dict, '
                             f'got {arch!r}')
        return dict(ARCHS[arch.lower()])
    spec = dict(arch)
    missing = {'dims', 'num_heads', 'depths'} - set(spec)
    if missing:
        raise ValueError(f'SGFormer: an arch dict needs {sorted(missing)}')
    for i, (dim, heads) in enumerate(zip(spec['dims'], spec['num_heads'])):
        if dim % heads or (SR_RATIOS[i] > 1 and heads % 2):
            raise ValueError(f'SGFormer: stage {i}: dim {dim} must be divisible by its '
                             f'{heads} heads, and stages 1-3 need an even number of heads')
    return spec


# ---------------------------------------------------------------------- small layers
class ConvGN(nn.Module):
    """Conv (no bias) + GroupNorm with one group: (B, C_in, H, W) -> (B, C_out, H', W')."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size, stride, kernel_size // 2,
                              groups=groups, bias=False)
        self.norm = nn.GroupNorm(1, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def tokens_to_map(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], H, W)


class LePE(nn.Module):
    """Locally-enhanced positional encoding: DWConv3x3(Linear(x)), (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return self.conv(tokens_to_map(self.linear(x), H, W)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """fc1 -> (h + DWConv3x3(h)) -> GELU -> fc2 on (B, N, C) tokens of an H x W map."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.fc1(x)
        x = self.act(x + self.dwconv(tokens_to_map(x, H, W)).flatten(2).transpose(1, 2))
        return self.fc2(x)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
           drop: nn.Module, key_mask: Optional[torch.Tensor] = None
           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale) v with (..., N_q, d) / (..., N_k, d) inputs.

    ``key_mask`` (broadcastable to (..., N_q, N_k), True = padding) removes keys. Returns the
    output (..., N_q, d) and the attention probabilities (..., N_q, N_k) after dropout (the
    official model scores significance from those).
    """
    attn = (q @ k.transpose(-2, -1)) * scale
    if key_mask is not None:
        attn = attn.masked_fill(key_mask, float('-inf'))
    attn = drop(attn.softmax(dim=-1))
    return attn @ v, attn


# ---------------------------------------------------------------------- attentions
class HybridScaleAttention(nn.Module):
    """Half the heads global (keys pooled by ``sr``), half in 7x7 windows; also returns the
    significance map.

    forward(x (B, N, C), H, W) -> (out (B, N, C), significance (B, H, W)).
    """

    def __init__(self, dim: int, num_heads: int, sr: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0):
        super().__init__()
        self.num_heads, self.sr = num_heads, sr
        self.scale = (dim // num_heads) ** -0.5
        self.sr_conv = nn.Conv2d(dim, dim, sr, stride=sr)
        self.sr_norm = nn.LayerNorm(dim)          # eps 1e-5, as the official model
        self.sr_act = nn.GELU()
        self.q_global = nn.Linear(dim, dim // 2, bias=qkv_bias)
        self.kv_global = nn.Linear(dim, dim, bias=qkv_bias)
        self.q_local = nn.Linear(dim, dim // 2, bias=qkv_bias)
        self.kv_local = nn.Linear(dim, dim, bias=qkv_bias)
        self.lepe = LePE(dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> Tuple[torch.Tensor, torch.Tensor]:
        B, N, C = x.shape
        heads, head_dim = self.num_heads // 2, C // self.num_heads
        lepe = self.lepe(x, H, W)
        grid = tokens_to_map(x, H, W)

        # Global half: every query against keys pooled over sr x sr cells.
        q = self.q_global(x).reshape(B, N, heads, head_dim).permute(0, 2, 1, 3)
        pad_h, pad_w = -H % self.sr, -W % self.sr
        pooled = self.sr_conv(F.pad(grid, (0, pad_w, 0, pad_h)) if pad_h or pad_w else grid)
        cells = pooled.shape[-2:]
        pooled = self.sr_act(self.sr_norm(pooled.flatten(2).transpose(1, 2)))
        k, v = self.kv_global(pooled).reshape(B, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        out_global, attn = attend(q, k, v, self.scale, self.attn_drop)
        out_global = out_global.transpose(1, 2).reshape(B, N, C // 2)
        score = attn.detach().mean(1).mean(dim=1).view(B, 1, *cells)    # per pooled key
        score = F.interpolate(score, (cells[0] * self.sr, cells[1] * self.sr), mode='nearest')
        significance_global = score[:, 0, :H, :W]

        # Local half: attention inside 7x7 windows.
        q = self.q_local(x).reshape(B, N, heads, head_dim).permute(0, 2, 1, 3)
        k, v = self.kv_local(x).reshape(B, N, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        out_local, significance_local = self._window_attention(q, k, v, H, W)

        out = self.proj(torch.cat([out_global, out_local], dim=-1) + lepe)
        return out, significance_local + significance_global

    def _window_attention(self, q, k, v, H: int, W: int):
        """(B, heads, N, d) maps of H x W -> output (B, N, heads d) and the local
        significance (B, H, W): each key's attention averaged over heads and the 49 queries
        of its window (padded queries adding nothing, so a key's score does not grow in a
        window that padding left with fewer real keys)."""
        B, heads, N, d = q.shape
        Hp, Wp = H + (-H % WINDOW), W + (-W % WINDOW)
        padded = (Hp, Wp) != (H, W)
        q, k, v = (window_partition(t, H, W, Hp, Wp) for t in (q, k, v))  # (B h nW, 49, d)
        key_mask = valid = None
        if padded:
            real = torch.zeros(1, 1, Hp, Wp, 1, device=q.device)
            real[:, :, :H, :W] = 1
            valid = window_partition(real.reshape(1, 1, Hp * Wp, 1), Hp, Wp, Hp, Wp)[..., 0]
            key_mask = (valid == 0)[:, None, :]                               # (nW, 1, 49)
            key_mask = key_mask.repeat(B * heads, 1, 1)
        out, attn = attend(q, k, v, self.scale, self.attn_drop, key_mask)
        out = window_reverse(out, B, heads, Hp, Wp)[:, :, :H, :W]            # (B, h, H, W, d)
        out = out.permute(0, 2, 3, 1, 4).reshape(B, N, heads * d)

        num_windows = (Hp // WINDOW) * (Wp // WINDOW)
        attn = attn.detach().view(B, heads, num_windows, WINDOW ** 2, WINDOW ** 2).mean(1)
        if padded:   # padded queries count as attending nowhere (a full window's mean)
            score = (attn * valid[None, :, :, None]).sum(2) / WINDOW ** 2
        else:
            score = attn.mean(dim=2)                                          # (B, nW, 49)
        score = score.view(B, Hp // WINDOW, Wp // WINDOW, WINDOW, WINDOW)
        score = score.permute(0, 1, 3, 2, 4).reshape(B, Hp, Wp)
        return out, score[:, :H, :W]


def window_partition(x: torch.Tensor, H: int, W: int, Hp: int, Wp: int) -> torch.Tensor:
    """(B, h, H W, d) tokens -> (B h nW, 49, d) windows of the map zero-padded to Hp x Wp,
    windows in row-major order, tokens row-major inside each."""
    B, h, _, d = x.shape
    x = x.reshape(B * h, H, W, d)
    if (Hp, Wp) != (H, W):
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    x = x.view(B * h, Hp // WINDOW, WINDOW, Wp // WINDOW, WINDOW, d)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, WINDOW * WINDOW, d)


def window_reverse(windows: torch.Tensor, B: int, h: int, Hp: int, Wp: int) -> torch.Tensor:
    """(B h nW, 49, d) -> (B, h, Hp, Wp, d)."""
    d = windows.shape[-1]
    x = windows.view(B * h, Hp // WINDOW, Wp // WINDOW, WINDOW, WINDOW, d)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, h, Hp, Wp, d)


class SelfGuidedAttention(nn.Module):
    """Global attention to keys / values reallocated by the significance map.

    forward(x (B, N, C), H, W, significance (B, H, W)) -> (out (B, N, C), None).
    """

    def __init__(self, dim: int, num_heads: int, sr: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0):
        super().__init__()
        if sr not in REALLOCATION:
            raise ValueError(f'SelfGuidedAttention: no token reallocation for sr={sr}; '
                             f'known: {sorted(REALLOCATION)}')
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.parts = REALLOCATION[sr]['parts']
        self.group_parts = tuple(n for n, _ in REALLOCATION[sr]['groups'])
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv_row = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv_col = nn.Linear(dim, dim, bias=qkv_bias)
        self.merge = nn.ModuleList(nn.Linear(f, 1) for _, f in REALLOCATION[sr]['groups'])
        self.lepe = LePE(dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)

    def group_bounds(self, num_tokens: int) -> List[Tuple[int, int]]:
        """[start, end) of each group in the significance-sorted sequence."""
        part = num_tokens // self.parts
        bounds, start = [], 0
        for i, n in enumerate(self.group_parts):
            end = num_tokens if i == len(self.group_parts) - 1 else start + n * part
            bounds.append((start, end))
            start = end
        return bounds

    def reallocate(self, x: torch.Tensor, significance: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens and their (B, N) significance -> (B, T, C) merged tokens,
        least significant (coarsest) group first."""
        B, N, C = x.shape
        order = torch.sort(significance, dim=1)[1]
        tokens = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, C))
        merged = []
        for (start, end), merge in zip(self.group_bounds(N), self.merge):
            group = tokens[:, start:end]
            f = merge.in_features
            count = math.ceil(group.shape[1] / f)
            if count == 0:
                continue
            if count * f > group.shape[1]:   # pad with the group's most significant token
                group = torch.cat([group, group[:, -1:].expand(-1, count * f - group.shape[1],
                                                               -1)], dim=1)
            merged.append(merge(group.transpose(1, 2).reshape(B, C, count, f)).squeeze(-1))
        return torch.cat(merged, dim=-1).transpose(1, 2)

    def forward(self, x: torch.Tensor, H: int, W: int, significance: torch.Tensor):
        B, N, C = x.shape
        heads, head_dim = self.num_heads // 2, C // self.num_heads
        lepe = self.lepe(x, H, W)
        q = self.q(x).reshape(B, N, self.num_heads, head_dim).permute(0, 2, 1, 3)
        rows = self.reallocate(x, significance.reshape(B, N))
        x_col = x.view(B, H, W, C).permute(0, 2, 1, 3).reshape(B, N, C)
        cols = self.reallocate(x_col, significance.permute(0, 2, 1).reshape(B, N))
        kv_rows = self.kv_row(rows).reshape(B, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        kv_cols = self.kv_col(cols).reshape(B, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        k, v = torch.cat([kv_rows, kv_cols], dim=2)      # row-order heads, then column-order
        out, _ = attend(q, k, v, self.scale, self.attn_drop)
        out = self.proj(out.transpose(1, 2).reshape(B, N, C) + lepe)
        return out, None


class GlobalAttention(nn.Module):
    """Full multi-head self-attention with LePE (stage 4).

    forward(x (B, N, C), H, W) -> (out (B, N, C), None).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.lepe = LePE(dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, H: int, W: int):
        B, N, C = x.shape
        head_dim = C // self.num_heads
        lepe = self.lepe(x, H, W)
        q = self.q(x).reshape(B, N, self.num_heads, head_dim).permute(0, 2, 1, 3)
        k, v = self.kv(x).reshape(B, N, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        out, _ = attend(q, k, v, self.scale, self.attn_drop)
        return self.proj(out.transpose(1, 2).reshape(B, N, C) + lepe), None


class SGFormerBlock(nn.Module):
    """Pre-norm block; ``kind`` is ``'hybrid'``, ``'guided'`` or ``'global'``.

    forward(x (B, N, C), H, W, significance or None) -> (x, significance for the next block
    or None).
    """

    def __init__(self, kind: str, dim: int, num_heads: int, sr: int, drop_path: float = 0.0,
                 attn_drop: float = 0.0):
        super().__init__()
        self.kind = kind
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        if kind == 'hybrid':
            self.attn = HybridScaleAttention(dim, num_heads, sr, attn_drop=attn_drop)
        elif kind == 'guided':
            self.attn = SelfGuidedAttention(dim, num_heads, sr, attn_drop=attn_drop)
        else:
            self.attn = GlobalAttention(dim, num_heads, attn_drop=attn_drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * MLP_RATIO)

    def forward(self, x: torch.Tensor, H: int, W: int,
                significance: Optional[torch.Tensor] = None):
        if self.kind == 'guided':
            if significance is None:
                raise RuntimeError('SGFormerBlock: a self-guided block needs the significance '
                                   'map of the hybrid-scale block before it')
            y, out_significance = self.attn(self.norm1(x), H, W, significance)
        else:
            y, out_significance = self.attn(self.norm1(x), H, W)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x), H, W))
        return x, out_significance


class Stem(nn.Module):
    """(B, 3, H, W) -> (B, C, H/4, W/4): three ConvGN (strides 2, 1, 2), GELU between."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = ConvGN(3, dim, 3, stride=2)
        self.conv2 = ConvGN(dim, dim, 3)
        self.conv3 = ConvGN(dim, dim, 3, stride=2)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class Downsample(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H/2, W/2): 1x1 ConvGN, 3x3/2 depthwise ConvGN, 1x1
    ConvGN, GELU between."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = ConvGN(in_dim, out_dim, 1)
        self.conv2 = ConvGN(out_dim, out_dim, 3, stride=2, groups=out_dim)
        self.conv3 = ConvGN(out_dim, out_dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class SGFormerStage(nn.Module):
    """Entry (stem or downsampling), blocks, LayerNorm: (B, C_in, H, W) -> (B, C, H', W')."""

    def __init__(self, entry: nn.Module, dim: int, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = entry
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)


def sincos_pos_embed(dim: int, size: int) -> torch.Tensor:
    """(1, size * size, dim) 2D sin-cos embedding of a size x size grid, row-major tokens:
    the first dim / 2 channels encode the column, the last dim / 2 the row, each as
    [sin, cos] of the coordinate times 1 / 10000^(i / (dim / 4))."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coord = torch.arange(size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coord, coord, indexing='ij')

    def encode(pos):
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float().unsqueeze(0)


@MODELS.register_module()
class SGFormer(BaseModule):
    """SG-Former backbone.

    Args:
        arch: ``'s'`` | ``'m'`` | ``'b'`` (see :data:`ARCHS`), or a dict with ``dims``,
            ``num_heads``, ``depths``.
        out_indices: stages to return (0..3, strides 4 / 8 / 16 / 32) as (B, C_i, H_i, W_i)
            maps, each after its stage's LayerNorm.
        drop_path_rate: stochastic depth of the last block (linear from 0).
        pretrain_img_size: image size of the checkpoint (the positional embedding is stored
            at size / 4).
        with_cp: gradient checkpointing of every block.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH | URL | 'zoo://NAME')``; official
            checkpoints (``patch_embed1.conv.0.c.weight`` ...) are converted on load.

    Attributes:
        out_channels, out_strides: per returned feature.

    Forward: (B, 3, H, W) -> tuple of (B, C_i, ceil(H / s_i), ceil(W / s_i)), any H, W.
    """

    def __init__(self, arch: Union[str, dict] = 's', out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.0, pretrain_img_size: int = 224,
                 with_cp: bool = False, attn_drop_rate: float = 0.0,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        spec = resolve_arch(arch)
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f'SGFormer: out_indices must be stage numbers 0..3, '
                             f'got {out_indices}')
        self.arch = arch
        self.out_indices = out_indices
        self.with_cp = with_cp
        dims = spec['dims']
        self.out_channels = tuple(dims[i] for i in out_indices)
        self.out_strides = tuple(4 * 2 ** i for i in out_indices)

        self.stem_norm = nn.LayerNorm(dims[0])       # eps 1e-5, as the official model
        self.pos_size = pretrain_img_size // 4
        self.pos_embed = nn.Parameter(sincos_pos_embed(dims[0], self.pos_size))
        rates = drop_path_rates(drop_path_rate, spec['depths'])
        self.stages = nn.ModuleList()
        for i, (dim, heads, depth, sr) in enumerate(zip(dims, spec['num_heads'],
                                                        spec['depths'], SR_RATIOS)):
            entry = Stem(dim) if i == 0 else Downsample(dims[i - 1], dim)
            kinds = ['global' if sr == 1 else ('guided' if j % 2 else 'hybrid')
                     for j in range(depth)]
            blocks = [SGFormerBlock(kind, dim, heads, sr, rates[i][j], attn_drop_rate)
                      for j, kind in enumerate(kinds)]
            self.stages.append(SGFormerStage(entry, dim, blocks))
        self._init_from_scratch()

    def _init_from_scratch(self) -> None:
        """The official initialisation: truncated-normal (std 0.02) linears, He-normal
        (fan-out) convs, unit norms, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _pos_embed(self, H: int, W: int) -> torch.Tensor:
        """(1, H W, C0) positional embedding for an H x W stage-1 map."""
        if (H, W) == (self.pos_size, self.pos_size):
            return self.pos_embed
        grid = self.pos_embed.transpose(1, 2).reshape(1, -1, self.pos_size, self.pos_size)
        return resize_pos_embed(grid, (H, W)).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) -> tuple of normalised (B, C_i, H_i, W_i) stage outputs."""
        outs = {}
        for i, stage in enumerate(self.stages[:max(self.out_indices) + 1]):
            x = stage.downsample(x)
            H, W = x.shape[-2:]
            x = x.flatten(2).transpose(1, 2)                              # (B, N, C)
            if i == 0:
                x = self.stem_norm(x) + self._pos_embed(H, W)
            significance = None
            for block in stage.blocks:
                if self.with_cp and torch.is_grad_enabled():
                    x, significance = checkpoint(block, x, H, W, significance,
                                                 use_reentrant=False)
                else:
                    x, significance = block(x, H, W, significance)
            x = tokens_to_map(stage.norm(x), H, W).contiguous()
            if i in self.out_indices:
                outs[i] = x
        return tuple(outs[i] for i in self.out_indices)

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from densebox.converters.sgformer import (convert_official_sgformer,
                                                      is_official_sgformer)
            load_pretrained_backbone(
                self, cfg, is_official_sgformer,
                lambda state: convert_official_sgformer(state, self.arch,
                                                        pretrain_img_size=self.pos_size * 4),
                how_to_get='Get the official SG-Former ImageNet weights (published by '
                           'OliverRensu/SG-Former) and convert them with '
                           'tools/convert/sgformer.py, or point checkpoint at the official '
                           'file itself (it is converted on load).')
            self._is_init = True
            return
        super().init_weights()


@MODELS.register_module()
class SGFormerClassifier(BaseModule):
    """The official ImageNet classifier: SG-Former, mean over tokens, linear.

    (B, 3, H, W) -> (B, num_classes) logits; ``backbone`` is an :class:`SGFormer` with
    ``out_indices=(3,)``.
    """

    def __init__(self, arch: Union[str, dict] = 's', num_classes: int = 1000,
                 drop_path_rate: float = 0.0, pretrain_img_size: int = 224,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.backbone = SGFormer(arch, out_indices=(3,), drop_path_rate=drop_path_rate,
                                 pretrain_img_size=pretrain_img_size)
        self.head = nn.Linear(self.backbone.out_channels[0], num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0].mean(dim=(2, 3)))
