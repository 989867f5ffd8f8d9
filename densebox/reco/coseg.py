"""ReCo's co-segmentation and scoring arithmetic (Shin, Xie and Albanie, NeurIPS'22).

Given the dense features of the k images retrieved for a concept, co-segmentation finds in
each image the pixel that best agrees with all the other images, and averages those seeds
into the concept's reference embedding:

    f_i                  unit feature of pixel i, over all n images' pixels (N = n h w)
    A_ij = (f_i . f_j) w_j                      columns weighted by w_j in [0, 1]
    s_i  = mean_m max_{j in image m} A_ij       agreement of pixel i with every image m
    seed_m = argmax_{i in image m} s_i
    ref = normalise(mean_m feature(seed_m))     (the seeds' features as extracted)

The weights combine ReCo's two refinements (both optional):

- language guidance: ``sigmoid(10 cos(MaskCLIP pixel, text))`` resized to the feature grid;
- context elimination: ``prod_c (1 - sigmoid(cos(f, ref_c)))`` over the references of the
  context concepts (tree, sky, building, road, person), computed first.

At inference a class's score map is ``sigmoid(cos(f, ref_k))``, resized to the image and
multiplied by the MaskCLIP guidance ``sigmoid(10 cos(pixel, text_k))``; the label is the
arg-max over classes.

Departure from the reference code: its per-image maximum reads the columns
``[start, start + end)`` of A, which for every image but the first runs past that image (the
paper defines the maximum over the image's own pixels, as done here).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ['language_guidance', 'context_weights', 'cosegment', 'score_maps']


def language_guidance(dense_clip: torch.Tensor, text: torch.Tensor, temperature: float = 10.0,
                      size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """``sigmoid(temperature * cos(pixel, text))``.

    Args:
        dense_clip: (B, D, h, w) MaskCLIP features.
        text: (D,) or (K, D) text embeddings.
        size: (H, W) to resize to (bilinear), or None.
    Returns:
        (B, h, w) for one text, (B, K, h, w) for K; resized when ``size`` is given.
    """
    one = text.dim() == 1
    texts = F.normalize(text.reshape(-1, text.shape[-1]).to(dense_clip), dim=-1)
    cos = torch.einsum('bdhw,kd->bkhw', F.normalize(dense_clip, dim=1), texts)
    weights = torch.sigmoid(temperature * cos)
    if size is not None and tuple(weights.shape[-2:]) != tuple(size):
        weights = F.interpolate(weights, size=tuple(size), mode='bilinear', align_corners=False)
    return weights[:, 0] if one else weights


def context_weights(features: torch.Tensor, context_refs: torch.Tensor) -> torch.Tensor:
    """``prod_c (1 - sigmoid(cos(f, ref_c)))``: (B, C, h, w) features, (N_c, C) references
    -> (B, h, w). No references: ones."""
    if context_refs is None or len(context_refs) == 0:
        return features.new_ones((features.shape[0],) + tuple(features.shape[-2:]))
    cos = torch.einsum('bchw,nc->bnhw', F.normalize(features, dim=1),
                       F.normalize(context_refs.to(features), dim=-1))
    return (1 - torch.sigmoid(cos)).prod(dim=1)


@torch.no_grad()
def cosegment(features: torch.Tensor, weights: Optional[torch.Tensor] = None,
              images_per_block: int = 8) -> Tuple[torch.Tensor, torch.Tensor]:
    """Seeds and reference embedding of one concept (see the module docstring).

    Args:
        features: (n, C, h, w) dense features of the n retrieved images.
        weights: (n, h, w) column weights in [0, 1]; None: all ones.
        images_per_block: images whose columns are compared at once (memory:
            N x block x h w floats).
    Returns:
        reference (C,) unit vector, and seeds (n, 2) int64 (y, x) per image.
    """
    if features.dim() != 4 or features.shape[0] < 1:
        raise ValueError(f'cosegment: features must be (n >= 1, C, h, w), got '
                         f'{tuple(features.shape)}')
    n, c, h, w = features.shape
    if weights is None:
        weights = features.new_ones((n, h, w))
    if tuple(weights.shape) != (n, h, w):
        raise ValueError(f'cosegment: weights must be (n, h, w) = {(n, h, w)}, got '
                         f'{tuple(weights.shape)}')
    if bool(weights.min() < 0) or bool(weights.max() > 1 + 1e-5):
        raise ValueError('cosegment: weights must lie in [0, 1]')
    flat = F.normalize(features.permute(0, 2, 3, 1).reshape(n * h * w, c).float(), dim=1)
    col_w = weights.reshape(n, h * w).float()
    per_image = flat.view(n, h * w, c)
    agreement = flat.new_zeros(n * h * w)
    for start in range(0, n, images_per_block):
        block = per_image[start:start + images_per_block]            # (b, hw, C)
        sims = torch.einsum('ic,bjc->ibj', flat, block)               # (N, b, hw)
        sims = sims * col_w[start:start + images_per_block][None]
        agreement += sims.max(dim=2).values.sum(dim=1)
    agreement = (agreement / n).view(n, h * w)
    flat_index = agreement.argmax(dim=1)                              # (n,)
    seeds = torch.stack([flat_index // w, flat_index % w], dim=1)
    seed_features = features.permute(0, 2, 3, 1).reshape(n, h * w, c)[
        torch.arange(n, device=features.device), flat_index]
    reference = F.normalize(seed_features.float().mean(dim=0), dim=0)
    return reference, seeds


def score_maps(features: torch.Tensor, references: torch.Tensor,
               guidance: Optional[torch.Tensor] = None,
               size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """ReCo's per-class scores of images.

    Args:
        features: (B, C, h, w) dense features.
        references: (K, C) reference embeddings.
        guidance: optional (B, K, H', W') MaskCLIP guidance, resized to the output size.
        size: (H, W) output size (default: the features' grid).
    Returns:
        (B, K, H, W): ``sigmoid(cos(f, ref_k))`` resized (bilinear), times the guidance.
    """
    cos = torch.einsum('bchw,kc->bkhw', F.normalize(features.float(), dim=1),
                       F.normalize(references.float().to(features.device), dim=-1))
    scores = torch.sigmoid(cos)
    if size is not None and tuple(scores.shape[-2:]) != tuple(size):
        scores = F.interpolate(scores, size=tuple(size), mode='bilinear', align_corners=False)
    if guidance is not None:
        if tuple(guidance.shape[-2:]) != tuple(scores.shape[-2:]):
            guidance = F.interpolate(guidance.float(), size=tuple(scores.shape[-2:]),
                                     mode='bilinear', align_corners=False)
        scores = scores * guidance
    return scores
