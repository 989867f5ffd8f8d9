"""MaskCLIP's dense, text-aligned feature map of a CLIP ResNet (Zhou et al., ECCV'22).

ReCo calls it "DenseCLIP" (it is not Rao et al.'s DenseCLIP). The CLIP image tower runs up to
its C5 map; the attention pool's value and output projections are then applied to every
pixel on their own, as 1x1 convolutions, with no query, key or positional embedding:

    z = c_proj(v_proj(C5))        (B, embed_dim, H/32, W/32)

so each pixel lands in the space of CLIP's image embeddings and can be compared with text
embeddings by cosine. ReCo uses CLIP RN50x16 (embed_dim 768).

The module holds a reference to an ``open_clip.CLIP`` built by
:func:`densebox.models.backbones.clip.build_clip`; it changes none of its weights.
"""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['MaskCLIP', 'CLIP_MEAN', 'CLIP_STD', 'clip_stage_features']

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_resnet(clip: nn.Module) -> nn.Module:
    visual = getattr(clip, 'visual', None)
    if visual is None or not hasattr(visual, 'attnpool') or not hasattr(visual, 'layer4'):
        raise TypeError(f'MaskCLIP needs a CLIP with a ResNet image tower (open_clip '
                        f'ModifiedResNet: RN50, RN50x16 ...), got '
                        f'{type(visual).__name__ if visual is not None else "no image tower"}')
    return visual


def clip_stage_features(visual: nn.Module, images: torch.Tensor,
                        stages: Sequence[int] = (4,)) -> tuple:
    """C2..C5 maps of an open_clip ModifiedResNet: stage s in 1..4 has stride 2 ** (s + 1).

    Args:
        images: (B, 3, H, W) normalised with CLIP's mean / std.
    Returns:
        the maps of ``stages`` in that order, each (B, C_s, H / 2^(s+1), W / 2^(s+1)).
    """
    x = visual.stem(images)
    outs = {}
    for s in range(1, max(stages) + 1):
        x = getattr(visual, f'layer{s}')(x)
        outs[s] = x
    return tuple(outs[s] for s in stages)


class MaskCLIP(nn.Module):
    """CLIP ResNet -> per-pixel embeddings (value-only attention pool).

    Args:
        clip: an ``open_clip.CLIP`` with a ModifiedResNet image tower.

    ``forward(images)``: (B, 3, H, W) RGB in [0, 1] -> (B, embed_dim, H/32, W/32), not
    normalised (callers take cosines). Images are normalised with CLIP's mean / std here.
    """

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.visual = _check_resnet(clip)
        self.register_buffer('mean', torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self.visual.attnpool.c_proj.out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean.to(images)) / self.std.to(images)
        c5, = clip_stage_features(self.visual, x, (4,))
        pool = self.visual.attnpool
        v = F.conv2d(c5, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)
        return F.conv2d(v, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias)
