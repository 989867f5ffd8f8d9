"""DenseCLIP's vision-to-language context decoder ("post-model prompting").

The K class text features query the image: a small pre-norm transformer decoder whose
queries are the text features and whose memory is the image's global and dense CLIP
embeddings. Its output, scaled by a learned ``gamma`` (in the segmentor), is added to the
text features, so every image gets its own class embeddings::

    memory = LN(Linear(LN(visual)))            (B, 1 + HW, width)
    x      = Linear(LN(text))                  (B, K, width)
    3 x:  x = x + SelfAttn(LN1(x))
          x = x + CrossAttn(LN2(x), memory)
          x = x + Dropout(MLP(LN3(x)))         MLP: width -> 4 width -> GELU -> width
    out    = Linear(LN(x))                     (B, K, visual_dim)

Submodule names and the arithmetic (attention without q/k/v bias, dropout after the
attention projection) follow the DenseCLIP repository, so its weights load key for key.
"""
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from densebox.registry import MODELS

__all__ = ['ContextDecoder', 'ContextAttention', 'ContextDecoderLayer']


class ContextAttention(nn.Module):
    """Multi-head attention of queries (B, N, C) over keys / values (B, M, C).

    q / k / v projections without bias, an output projection with bias, dropout after it.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'ContextAttention: width {dim} is not divisible by {num_heads} '
                             'heads')
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, N, C), k and v (B, M, C) -> (B, N, C)."""
        B, N, C = q.shape
        M = k.shape[1]
        h = self.num_heads
        q = self.q_proj(q).reshape(B, N, h, C // h).transpose(1, 2)       # (B, h, N, d)
        k = self.k_proj(k).reshape(B, M, h, C // h).transpose(1, 2)       # (B, h, M, d)
        v = self.v_proj(v).reshape(B, M, h, C // h).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)     # (B, h, N, M)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class ContextDecoderLayer(nn.Module):
    """Pre-norm decoder layer: self-attention, cross-attention to the memory, MLP."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = ContextAttention(dim, num_heads, dropout)
        self.cross_attn = ContextAttention(dim, num_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim * 4, dim))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """x (B, K, C), memory (B, M, C) -> (B, K, C)."""
        q = self.norm1(x)
        x = x + self.self_attn(q, q, q)
        x = x + self.cross_attn(self.norm2(x), memory, memory)
        return x + self.dropout(self.mlp(self.norm3(x)))


@MODELS.register_module()
class ContextDecoder(BaseModule):
    """Text features attend to the image's CLIP embeddings.

    Args:
        visual_dim: width of the text features and of the visual embeddings (CLIP's
            embedding width: 1024 for RN50, 512 for RN101 and ViT-B/16).
        transformer_width: decoder width (256).
        transformer_heads: attention heads (4).
        transformer_layers: decoder layers (3 in the DenseCLIP recipes).
        dropout: of the attention outputs and the MLP (0.1).

    Forward: text (B, K, visual_dim), visual (B, M, visual_dim) -> (B, K, visual_dim).

    Linear weights start from a truncated normal (std 0.02) with zero bias, LayerNorms at
    weight 1 and bias 0, as in the DenseCLIP repository.
    """

    def __init__(self, visual_dim: int = 1024, transformer_width: int = 256,
                 transformer_heads: int = 4, transformer_layers: int = 3,
                 dropout: float = 0.1, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.visual_dim = visual_dim
        self.memory_proj = nn.Sequential(nn.LayerNorm(visual_dim),
                                         nn.Linear(visual_dim, transformer_width),
                                         nn.LayerNorm(transformer_width))
        self.text_proj = nn.Sequential(nn.LayerNorm(visual_dim),
                                       nn.Linear(visual_dim, transformer_width))
        self.decoder = nn.ModuleList(
            ContextDecoderLayer(transformer_width, transformer_heads, dropout)
            for _ in range(transformer_layers))
        self.out_proj = nn.Sequential(nn.LayerNorm(transformer_width),
                                      nn.Linear(transformer_width, visual_dim))
        self.apply(self._init_module)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """text (B, K, visual_dim), visual (B, M, visual_dim) -> (B, K, visual_dim)."""
        memory = self.memory_proj(visual)
        x = self.text_proj(text)
        for layer in self.decoder:
            x = layer(x, memory)
        return self.out_proj(x)
