"""Pixel-wise softmax cross-entropy for semantic segmentation."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from densebox.registry import MODELS


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over classes, per pixel, with an ignore label.

    Args:
        loss_weight: multiplier of the returned loss.
        ignore_index: label value that contributes nothing (255 in densebox).
        avg_non_ignore: average over the non-ignored pixels only. When False the sum is
            divided by *all* pixels, ignored ones included (mmsegmentation's default;
            it shrinks the loss of images with many ignored pixels).
        class_weight: optional per-class weights (length C) multiplied into each
            pixel's loss; the average still divides by a pixel count, not a weight sum.
        loss_name: key of this loss in the head's loss dict.
    """

    def __init__(self, loss_weight: float = 1.0, ignore_index: int = 255,
                 avg_non_ignore: bool = False, class_weight: Optional[Sequence[float]] = None,
                 loss_name: str = 'loss_ce'):
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        self.class_weight = None if class_weight is None else list(map(float, class_weight))
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor,
                ignore_index: Optional[int] = None) -> torch.Tensor:
        """
        Args:
            cls_score: (B, C, H, W) logits.
            label: (B, H, W) int64 class indices; ``ignore_index`` marks ignored pixels.
            ignore_index: overrides the constructor's value for this call.
        Returns:
            scalar loss.
        """
        if cls_score.dim() != label.dim() + 1 or cls_score.shape[2:] != label.shape[1:]:
            raise ValueError(f'CrossEntropyLoss: logits {tuple(cls_score.shape)} and labels '
                             f'{tuple(label.shape)} do not match as (B, C, H, W) / (B, H, W)')
        ignore = self.ignore_index if ignore_index is None else ignore_index
        weight = None
        if self.class_weight is not None:
            if len(self.class_weight) != cls_score.shape[1]:
                raise ValueError(f'CrossEntropyLoss: class_weight has {len(self.class_weight)} '
                                 f'entries for {cls_score.shape[1]} classes')
            weight = cls_score.new_tensor(self.class_weight)
        label = label.long()
        per_pixel = F.cross_entropy(cls_score, label, weight=weight, reduction='none',
                                    ignore_index=ignore)
        if self.avg_non_ignore:
            denom = (label != ignore).sum().clamp(min=1)
        else:
            denom = label.numel()
        return self.loss_weight * per_pixel.sum() / denom
