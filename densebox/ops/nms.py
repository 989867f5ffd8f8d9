"""Non-maximum suppression: plain, class-aware and per-image in one call.

Semantics are torchvision.ops.nms / batched_nms: greedy suppression in order of decreasing
score (equal scores in index order, i.e. a stable sort), a box is dropped when its IoU with
a kept box is strictly greater than ``iou_threshold``, and the kept indices come back
sorted by decreasing score.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _ext

# image_idxs are folded into the group key as image * 2**32 + idx
_IMAGE_STRIDE = 1 << 32


def _check(boxes: Tensor, scores: Tensor, name: str) -> None:
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.size(-1) != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f'{name}: boxes must be a (N, 4) xyxy tensor, got {shape}')
    if not boxes.is_floating_point():
        raise TypeError(f'{name}: boxes must be floating point, got {boxes.dtype}')
    if not isinstance(scores, Tensor) or scores.shape != boxes.shape[:1]:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f'{name}: scores must be ({boxes.size(0)},), got {shape}')
    if scores.device != boxes.device:
        raise ValueError(f'{name}: boxes on {boxes.device} but scores on {scores.device}')


def _torchvision_inputs(boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """torchvision wants one dtype, and no float16 / bfloat16 on the CPU."""
    dtype = torch.promote_types(boxes.dtype, scores.dtype)
    if boxes.device.type == 'cpu' and dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return boxes.to(dtype), scores.to(dtype)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS.

    Args:
        boxes (Tensor): (N, 4) boxes, xyxy, floating point (float16 / bfloat16 are compared
            in float32 on the CPU, in their own type with float32 areas on CUDA).
        scores (Tensor): (N,) scores; only their order matters.
        iou_threshold (float): a box is suppressed by a kept box when IoU > this.

    Returns:
        Tensor: (K,) int64 indices of the kept boxes, by decreasing score.
    """
    _check(boxes, scores, 'nms')
    ext = _ext.extension_for(boxes.device)
    if ext is None:
        import torchvision
        return torchvision.ops.nms(*_torchvision_inputs(boxes, scores), float(iou_threshold))
    return ext.nms(boxes, scores, None, float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                image_idxs: Tensor | None = None) -> Tensor:
    """NMS independently inside each group of boxes (class-aware, per image).

    Boxes with different ``idxs`` (or different ``image_idxs``) never suppress each other.
    One call handles a whole batch: pass ``idxs`` = labels and ``image_idxs`` = the image
    of each box, or fold both into ``idxs`` yourself (``image * num_classes + label``).
    The extension keeps the groups as true segments (no coordinate offsets), so IoUs are
    those of the boxes themselves however many groups there are.

    Args:
        boxes (Tensor): (N, 4) boxes, xyxy, floating point.
        scores (Tensor): (N,) scores.
        idxs (Tensor): (N,) integer group of each box (e.g. class label). With
            ``image_idxs`` it must lie in [0, 2**32).
        iou_threshold (float): suppression threshold (IoU > threshold suppresses).
        image_idxs (Tensor, optional): (N,) image index of each box, >= 0.

    Returns:
        Tensor: (K,) int64 indices of the kept boxes, by decreasing score over all groups
        (equal scores in index order).
    """
    _check(boxes, scores, 'batched_nms')
    if not isinstance(idxs, Tensor) or idxs.shape != scores.shape:
        raise ValueError(f'batched_nms: idxs must be ({boxes.size(0)},), got '
                         f'{tuple(idxs.shape) if isinstance(idxs, Tensor) else type(idxs)}')
    groups = idxs.to(device=boxes.device, dtype=torch.int64)
    if image_idxs is not None:
        if not isinstance(image_idxs, Tensor) or image_idxs.shape != scores.shape:
            raise ValueError(f'batched_nms: image_idxs must be ({boxes.size(0)},)')
        images = image_idxs.to(device=boxes.device, dtype=torch.int64)
        if groups.device.type == 'cpu' and groups.numel() and (
                int(groups.min()) < 0 or int(groups.max()) >= _IMAGE_STRIDE
                or int(images.min()) < 0):
            raise ValueError('batched_nms: with image_idxs, idxs must lie in [0, 2**32) and '
                             'image_idxs be >= 0')
        groups = images * _IMAGE_STRIDE + groups
    ext = _ext.extension_for(boxes.device)
    if ext is None:
        import torchvision
        if image_idxs is not None:  # dense ids keep torchvision's coordinate offsets small
            groups = torch.unique(groups, return_inverse=True)[1]
        return torchvision.ops.batched_nms(*_torchvision_inputs(boxes, scores), groups,
                                           float(iou_threshold))
    return ext.nms(boxes, scores, groups, float(iou_threshold))


def segmented_nms(boxes: Tensor, valid: Tensor | None, iou_threshold: float) -> Tensor:
    """Greedy NMS inside each row of a fixed-shape candidate table.

    The form detection heads need for a whole batch: G = images x classes rows of k
    candidates each (e.g. the per-class top-k), every row already sorted by decreasing
    score. The result has the input's shape, so nothing waits for the host: the extension
    runs one CUDA block per row and never copies to the host. Row by row it equals
    ``torchvision.ops.nms`` on that row's valid boxes with scores decreasing along the row.

    Args:
        boxes (Tensor): (G, k, 4) xyxy boxes, each row in decreasing score order.
        valid (Tensor | None): (G, k) bool, the candidates taking part (e.g. score above
            the threshold); the others are neither kept nor suppress anything. None: all.
        iou_threshold (float): a box is suppressed by a kept earlier box when IoU > this.

    Returns:
        Tensor: (G, k) bool, True for the boxes kept.
    """
    if not isinstance(boxes, Tensor) or boxes.dim() != 3 or boxes.size(-1) != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f'segmented_nms: boxes must be a (G, k, 4) xyxy tensor, got {shape}')
    if not boxes.is_floating_point():
        raise TypeError(f'segmented_nms: boxes must be floating point, got {boxes.dtype}')
    if valid is not None:
        if not isinstance(valid, Tensor) or valid.shape != boxes.shape[:2]:
            shape = tuple(valid.shape) if isinstance(valid, Tensor) else type(valid).__name__
            raise ValueError(f'segmented_nms: valid must be {tuple(boxes.shape[:2])}, got {shape}')
        if valid.device != boxes.device:
            raise ValueError(f'segmented_nms: boxes on {boxes.device} but valid on {valid.device}')
        valid = valid.bool()
    ext = _ext.extension_for(boxes.device)
    if ext is not None:
        return ext.segmented_nms(boxes, valid, float(iou_threshold))
    return _segmented_nms_torchvision(boxes, valid, float(iou_threshold))


def _segmented_nms_torchvision(boxes: Tensor, valid: Tensor | None, iou_threshold: float) -> Tensor:
    """Fallback: torchvision's batched_nms over the valid entries (this one syncs the host)."""
    import torchvision
    groups, k = boxes.shape[:2]
    if valid is None:
        valid = torch.ones(groups, k, dtype=torch.bool, device=boxes.device)
    keep = torch.zeros_like(valid)
    rows, cols = valid.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return keep
    # the position in the row stands in for the score: a stable sort keeps the row order
    rank_scores = -cols.to(torch.float32)
    flat_boxes, rank_scores = _torchvision_inputs(boxes[rows, cols], rank_scores)
    kept = torchvision.ops.batched_nms(flat_boxes, rank_scores, rows, iou_threshold)
    keep[rows[kept], cols[kept]] = True
    return keep
