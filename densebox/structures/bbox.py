"""Box utilities on xyxy tensors. All functions broadcast over leading batch dimensions."""
import torch
from torch import Tensor


def bbox_area(boxes: Tensor, offset: float = 0.0) -> Tensor:
    """Area of (..., 4) xyxy boxes -> (...). Degenerate boxes have area 0. ``offset`` is added
    to the width and height (1 for inclusive pixel boxes, as :func:`densebox.ops.box_iou`)."""
    return ((boxes[..., 2] - boxes[..., 0] + offset).clamp(min=0)
            * (boxes[..., 3] - boxes[..., 1] + offset).clamp(min=0))


def bbox_clip(boxes: Tensor, height: float, width: float) -> Tensor:
    """Clip (..., 4) xyxy boxes to an image of ``height`` x ``width``."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def bbox_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (..., 4) centre x, centre y, width, height."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], dim=-1)


def bbox_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) centre x, centre y, width, height -> (..., 4) xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5], dim=-1)
