"""Pairwise IoU of two box sets (plain tensor code: it is already one fused expression)."""
from __future__ import annotations

import torch
from torch import Tensor


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every box of ``boxes1`` with every box of ``boxes2``.

    Args:
        boxes1 (Tensor): (N, 4) xyxy boxes.
        boxes2 (Tensor): (M, 4) xyxy boxes.

    Returns:
        Tensor: (N, M) IoU, in the boxes' floating type (integer boxes give float32).
        Zero-area pairs give NaN (0 / 0), as torchvision.ops.box_iou does.
    """
    for name, b in (('boxes1', boxes1), ('boxes2', boxes2)):
        if b.dim() != 2 or b.size(-1) != 4:
            raise ValueError(f'box_iou: {name} must be (N, 4), got {tuple(b.shape)}')
    if not boxes1.is_floating_point():
        boxes1 = boxes1.float()
    if not boxes2.is_floating_point():
        boxes2 = boxes2.float()
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)
