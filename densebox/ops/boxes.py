"""Pairwise IoU of two box sets: the one box-IoU of densebox (matching, cropping, evaluation).

Plain tensor code: it is already one fused expression. ``box_iou_np`` is the same
computation for numpy callers (data transforms, metrics), in float64.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from densebox.structures.bbox import bbox_area


def box_iou(boxes1: Tensor, boxes2: Tensor, offset: float = 0.0, eps: float = 0.0) -> Tensor:
    """IoU of every box of ``boxes1`` with every box of ``boxes2``, over leading dimensions.

    Args:
        boxes1 (Tensor): (..., N, 4) xyxy boxes.
        boxes2 (Tensor): (..., M, 4) xyxy boxes; leading dimensions broadcast with boxes1's.
        offset (float): added to every width and height: 0 for continuous coordinates,
            1 for inclusive pixel boxes (the VOC devkit's ``xmax - xmin + 1``).
        eps (float): lower bound of the union. 0 (default) keeps torchvision.ops.box_iou's
            NaN for a pair of zero-area boxes; the matcher sets a small value so that padding
            boxes give IoU 0.

    Returns:
        Tensor: (..., N, M) IoU, in the boxes' floating type (integer boxes give float32).
        A box with negative width or height has area 0.
    """
    for name, b in (('boxes1', boxes1), ('boxes2', boxes2)):
        if b.dim() < 2 or b.size(-1) != 4:
            raise ValueError(f'box_iou: {name} must be (..., N, 4), got {tuple(b.shape)}')
    if not boxes1.is_floating_point():
        boxes1 = boxes1.float()
    if not boxes2.is_floating_point():
        boxes2 = boxes2.float()
    area1 = bbox_area(boxes1, offset)
    area2 = bbox_area(boxes2, offset)
    top_left = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (bottom_right - top_left + offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    return inter / (union.clamp(min=eps) if eps > 0 else union)


def box_iou_np(boxes1, boxes2, offset: float = 0.0) -> np.ndarray:
    """:func:`box_iou` for numpy (or list) boxes: (N, 4), (M, 4) -> (N, M) float64.

    The union is bounded below by float64's eps, so zero-area pairs give 0, and empty
    inputs give an (N, M) array with a zero dimension.
    """
    b1 = torch.from_numpy(np.asarray(boxes1, dtype=np.float64).reshape(-1, 4))
    b2 = torch.from_numpy(np.asarray(boxes2, dtype=np.float64).reshape(-1, 4))
    return box_iou(b1, b2, offset, eps=float(np.finfo(np.float64).eps)).numpy()
